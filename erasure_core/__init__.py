"""Concept erasure for Stable Diffusion: ESD, EAP, AGE and UCE on any host's model, exported as a kohya LoRA.

Host-agnostic: imports torch, diffusers, transformers, peft and safetensors only, never a host (ComfyUI, A1111).
"""

from .attack import ATTACKS, AttackConfig, AttackReport
from .attack import attack as run_attack
from .audit import AuditReport, Probe
from .backends.base import Backend, Conditioning
from .callbacks import Callbacks
from .config import AgeConfig, EapConfig, EraseConfig, EsdConfig, UceConfig, make_config, method_defaults
from .errors import Cancelled, ConfigError, ErasureError, ModelError, NumericalError, ResourceError
from .lora.export import LoraFile, load_lora
from .trainer import EraseResult, erase, export_lora, lora_weights_for, run_audit
from .version import __version__

__all__ = [
    "ATTACKS",
    "AgeConfig",
    "AttackConfig",
    "AttackReport",
    "AuditReport",
    "Backend",
    "Callbacks",
    "Cancelled",
    "Conditioning",
    "ConfigError",
    "EapConfig",
    "EraseConfig",
    "EraseResult",
    "ErasureError",
    "EsdConfig",
    "LoraFile",
    "ModelError",
    "NumericalError",
    "Probe",
    "ResourceError",
    "UceConfig",
    "__version__",
    "erase",
    "export_lora",
    "load_lora",
    "lora_weights_for",
    "make_config",
    "method_defaults",
    "run_attack",
    "run_audit",
]
