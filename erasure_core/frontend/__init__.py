"""What every host's front end shares: the concept lists users type, the settings form, safe LoRA file names, the
LoRA cache, what a LoRA file says about itself, and its pictures. Host-free, so each host adapter (`nodes/` for
ComfyUI, `a1111/` for A1111 and Forge) stays a thin layer over these and the engine.

A host adapter imports from three places only (tests/test_boundaries.py checks it): the engine's public API
(`erasure_core`), this package, and `erasure_core.backends` to build its `Backend`. The engine's modules that a front
end needs are re-exported here, so the engine can rearrange its internals without touching a host.
"""

from ..callbacks import INFO_CONCEPT, INFO_FOUND, INFO_LOSS, INFO_PHASE
from ..config import CONFIG_CLASSES, is_closed_form
from ..defaults import DEFAULTS
from ..files import atomic_write
from ..jsonsafe import json_safe
from ..layers import LAYER_SET_HELP
from ..lora.export import lora_from_tensors, read_safetensors, save_lora_file
from ..monitor import LastErasure
from ..preview import PREVIEW_ROWS, image_grid, preview_rows, row_label
from ..resume import load_state

# The ComfyUI server event that carries a run's progress to the browser; `web/erasure.js` listens for this name
# (tests/nodes/test_pack.py checks that the two agree).
PROGRESS_EVENT = "concept_erasure.progress"

__all__ = [
    "CONFIG_CLASSES",
    "DEFAULTS",
    "INFO_CONCEPT",
    "INFO_FOUND",
    "INFO_LOSS",
    "INFO_PHASE",
    "LAYER_SET_HELP",
    "PREVIEW_ROWS",
    "PROGRESS_EVENT",
    "LastErasure",
    "atomic_write",
    "image_grid",
    "is_closed_form",
    "json_safe",
    "load_state",
    "lora_from_tensors",
    "preview_rows",
    "read_safetensors",
    "row_label",
    "save_lora_file",
]
