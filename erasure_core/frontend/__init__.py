"""What every host's front end shares: the concept lists users type, the settings form, safe LoRA file names, the
LoRA cache, what a LoRA file says about itself, and its pictures. Host-free, so each host adapter (`nodes/` for
ComfyUI, `a1111/` for A1111 and Forge) stays a thin layer over these and the engine.
"""
