"""What every host's front end shares: the concept lists users type, the settings form, safe LoRA file names, the
LoRA cache, what a LoRA file says about itself, and its pictures. Host-free, so each host adapter (`nodes/` for
ComfyUI, `a1111/` for A1111 and Forge) stays a thin layer over these and the engine.
"""

# The ComfyUI server event that carries a run's progress to the browser; `web/erasure.js` listens for this name
# (tests/nodes/test_pack.py checks that the two agree).
PROGRESS_EVENT = "concept_erasure.progress"
