"""Write and read erasure LoRAs as kohya-format `.safetensors` files.

Only `lora_unet_*` tensors go in the file (one stray key makes diffusers skip its kohya path, hosts.md §5.3);
everything else is string metadata in the header: our own `erasure_*` fields, plus the `ss_*` and `modelspec.*`
fields that A1111, Forge and model sites display. Files are written under a temporary name and renamed, so a
crash never leaves a half-written LoRA behind.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .. import jsonsafe
from ..errors import ModelError
from ..files import atomic_write
from ..version import __version__
from .adapter import LoraTensors, LoraWeights
from .keys import ALPHA, DOWN, LORA_PREFIX_UNET, UP, kohya_prefix

META_PREFIX = "erasure_"
BASE_MODEL_VERSION = {"sd1": "sd_v1", "sd2": "sd_v2", "sdxl": "sdxl_base_v1-0"}  # kohya ss_base_model_version
MODELSPEC_ARCH = {
    "sd1": "stable-diffusion-v1/lora",
    "sd2": "stable-diffusion-v2/lora",
    "sdxl": "stable-diffusion-xl-v1-base/lora",
}


@dataclass
class LoraFile:
    """A LoRA as stored: tensors keyed by kohya prefix, and the header metadata."""

    weights: dict[str, LoraTensors]
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def arch(self) -> str | None:
        return self.metadata.get(META_PREFIX + "arch")

    def info(self) -> dict[str, Any]:
        """Our metadata decoded (method, concepts, found concepts, settings), for hosts to show."""
        out: dict[str, Any] = {}
        for key, value in self.metadata.items():
            if key.startswith(META_PREFIX):
                try:
                    out[key[len(META_PREFIX) :]] = json.loads(value)
                except json.JSONDecodeError:
                    out[key[len(META_PREFIX) :]] = value
        return out


def to_kohya_state_dict(
    weights: LoraWeights, key_map: Mapping[str, str], dtype: torch.dtype = torch.float16
) -> dict[str, torch.Tensor]:
    """Tensors of a kohya LoRA file. Refuses a module the key map cannot name (nothing is silently dropped)."""
    if missing := sorted(set(weights) - set(key_map)):
        raise ModelError(f"No kohya key for the LoRA module(s) {missing[:5]}; this is a bug in the key mapping.")
    tensors: dict[str, torch.Tensor] = {}
    for name, w in weights.items():
        prefix = key_map[name]
        tensors[f"{prefix}.{DOWN}"] = w.down.to(dtype).contiguous()
        tensors[f"{prefix}.{UP}"] = w.up.to(dtype).contiguous()
        tensors[f"{prefix}.{ALPHA}"] = torch.tensor(float(w.alpha), dtype=dtype)
    return tensors


def build_metadata(
    *,
    arch: str,
    output_name: str,
    rank: int,
    alpha: float,
    info: Mapping[str, Any],
    base_model: str,
    description: str,
) -> dict[str, str]:
    """Header metadata: kohya `ss_*` and ModelSpec fields, and every entry of `info` as `erasure_<key>` (JSON)."""
    meta = {
        "ss_network_module": "networks.lora",
        "ss_network_dim": str(rank),
        "ss_network_alpha": str(alpha),
        "ss_base_model_version": BASE_MODEL_VERSION[arch],
        "ss_v2": str(arch == "sd2"),
        "ss_output_name": output_name,  # A1111 uses it as the alias inserted into <lora:...>
        "ss_sd_model_name": base_model,
        "ss_training_comment": description,
        "modelspec.sai_model_spec": "1.0.0",
        "modelspec.architecture": MODELSPEC_ARCH[arch],
        "modelspec.implementation": "diffusers"
        if arch != "sdxl"
        else "https://github.com/Stability-AI/generative-models",
        "modelspec.title": output_name,
        "modelspec.description": description,
        "modelspec.date": time.strftime("%Y-%m-%dT%H:%M:%S"),
        META_PREFIX + "version": __version__,
        META_PREFIX + "arch": arch,
    }
    for key, value in info.items():
        meta[META_PREFIX + key] = value if isinstance(value, str) else jsonsafe.dumps(value)
    return meta


def save_lora_file(tensors: Mapping[str, torch.Tensor], path: str | Path, metadata: Mapping[str, str]) -> Path:
    """Atomic write: a `.partial` file renamed into place; on any error the partial file is removed."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ModelError(f"LoRA files are written as .safetensors; got {path.name!r}.")
    if stray := [k for k in tensors if not k.startswith(LORA_PREFIX_UNET + "_")]:
        raise ModelError(f"Refusing to write non-kohya tensors {stray[:3]}: they would break diffusers' loader.")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as tmp:
        save_file(dict(tensors), str(tmp), metadata=dict(metadata))
    return path


def read_safetensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Every tensor and the header of a safetensors file (never unpickles). `ModelError` if missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"LoRA file not found: {path}.")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - a safetensors handle, not a dict
    except Exception as exc:
        raise ModelError(f"Could not read {path.name} as a safetensors file: {exc}") from exc
    return tensors, metadata


def lora_from_tensors(
    tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str], source: str = "the LoRA"
) -> LoraFile:
    """The kohya UNet LoRA in a state dict (a file's tensors, or a host's in-memory LoRA); `source` names it in errors.

    A layer without `.alpha` gets alpha = rank (scale 1), as kohya loaders do.
    """
    weights: dict[str, LoraTensors] = {}
    for key, down in tensors.items():
        if not (key.startswith(LORA_PREFIX_UNET + "_") and key.endswith("." + DOWN)):
            continue
        prefix = key[: -len(DOWN) - 1]
        up = tensors.get(f"{prefix}.{UP}")
        if up is None:
            raise ModelError(f"{source} is damaged: {prefix} has lora_down but no lora_up.")
        alpha = tensors.get(f"{prefix}.{ALPHA}")
        rank = down.shape[0]
        weights[prefix] = LoraTensors(
            down.float(), up.float(), float(alpha.item()) if alpha is not None else float(rank)
        )
    if not weights:
        raise ModelError(f"{source} holds no kohya UNet LoRA (no 'lora_unet_*.lora_down.weight' tensors).")
    return LoraFile(weights, dict(metadata))


def load_lora(path: str | Path) -> LoraFile:
    """Read a kohya LoRA file (ours or another tool's, UNet part) with its metadata.

    Raises `ModelError` for a missing or unreadable file and for a file with no kohya UNet LoRA tensors.
    """
    tensors, metadata = read_safetensors(path)
    return lora_from_tensors(tensors, metadata, Path(path).name)


def weights_for_modules(
    lora: LoraFile,
    key_map: Mapping[str, str],
    module_shapes: Mapping[str, tuple[int, ...]],
    aliases: Mapping[str, str] | None = None,
) -> LoraWeights:
    """Match a loaded file to this model's modules (resume, audit). Refuses a file made for another architecture.

    `aliases` maps further kohya prefixes to module names (a host's own key map: e.g. ComfyUI accepts both the
    diffusers-style and the ldm-style names of one layer). The module's own spelling is always accepted too: an
    SD1 LoRA a ComfyUI or A1111 of this extension's earlier versions wrote with ldm names still resumes there.
    """
    own = {kohya_prefix(name): name for name in key_map}
    by_prefix = {**own, **(aliases or {}), **{prefix: name for name, prefix in key_map.items()}}
    unknown = [p for p in lora.weights if p not in by_prefix]
    if unknown:
        made_for = lora.arch or "an unknown architecture"
        raise ModelError(
            f"This LoRA does not fit the loaded model: {len(unknown)} of its {len(lora.weights)} layers "
            f"(e.g. {unknown[0]}) do not exist in it. It was made for {made_for}; load it on that kind of model."
        )
    out: LoraWeights = {}
    for prefix, w in lora.weights.items():
        name = by_prefix[prefix]
        shape = module_shapes[name]
        if w.up.shape[0] != shape[0] or w.down.flatten(1).shape[1] != int(torch.tensor(shape[1:]).prod()):
            raise ModelError(
                f"The LoRA layer {prefix} has shape {tuple(w.up.shape[:1]) + tuple(w.down.shape[1:])} but the model's "
                f"layer has {shape}; the file was made for another architecture."
            )
        out[name] = w
    return out
