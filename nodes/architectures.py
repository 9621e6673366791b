"""Which ComfyUI models the pack can train on. Host-free (it only reads class names), so CI tests the refusals."""

from __future__ import annotations

from typing import Any

from ..erasure_core import ModelError

# ComfyUI model-config class (comfy/supported_models.py) → our architecture. Everything else is refused by name.
ARCHITECTURES = {
    "SD15": "sd1",
    "SD20": "sd2",
    "SDXL": "sdxl",
    "SSD1B": "sdxl",
    "Segmind_Vega": "sdxl",
    "KOALA_700M": "sdxl",
    "KOALA_1B": "sdxl",
}


def model_architecture(model: Any) -> str:
    """'sd1' / 'sd2' / 'sdxl' for a ComfyUI MODEL (ModelPatcher), or a `ModelError` that names what was connected."""
    if model is None or not hasattr(model, "model"):
        raise ModelError("No MODEL is connected; connect the MODEL output of a checkpoint loader.")
    config_name = type(getattr(model.model, "model_config", None)).__name__
    arch = ARCHITECTURES.get(config_name)
    if arch is None:
        raise ModelError(
            f"Concept erasure supports Stable Diffusion 1.x, 2.x and SDXL UNets; the connected model is "
            f"'{config_name}' ({type(model.model).__name__}). Load an SD1.5, SD2.x or SDXL checkpoint."
        )
    return arch
