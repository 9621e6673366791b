"""LoRA through peft, the kohya key mapping and the `.safetensors` file format."""

from .adapter import LoraTensors, LoraWeights
from .export import LoraFile, load_lora

__all__ = ["LoraFile", "LoraTensors", "LoraWeights", "load_lora"]
