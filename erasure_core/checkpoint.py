"""Bake an erasure LoRA into a single-file checkpoint, for operators who publish an erased model
(`python -m erasure_core apply`).

A single-file SD checkpoint keeps its UNet under `model.diffusion_model.` with ldm (CompVis/sgm) module paths.
Our LoRA files name layers either way (lora/keys.py): ldm paths (SDXL, and files made in ComfyUI or A1111) match
the checkpoint directly; diffusers paths (SD1/SD2 files made by the CLI) go through the same block-index rule as
export. Every tensor that is not a merged weight is written back untouched, in its own dtype, and the merged ones
are computed in float32 and stored in their original dtype, so the file loads wherever the input loaded.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors.torch import save_file

from . import jsonsafe
from .errors import ConfigError, ModelError
from .files import atomic_write
from .lora.export import META_PREFIX, LoraFile, lora_from_tensors, read_safetensors
from .lora.keys import LORA_PREFIX_UNET, kohya_prefix, ldm_to_diffusers

UNET_PREFIX = "model.diffusion_model."
ARCH_NAMES = {"sd1": "SD 1.x", "sd2": "SD 2.x", "sdxl": "SDXL"}


def checkpoint_arch(tensors: Mapping[str, torch.Tensor]) -> str:
    """'sd1', 'sd2' or 'sdxl' from a checkpoint's keys: SDXL's UNet takes an ADM vector (`label_emb`), SD2's
    cross-attention reads 1024-wide OpenCLIP states, SD1's 768-wide CLIP-L ones."""
    unet = [k for k in tensors if k.startswith(UNET_PREFIX)]
    if not unet:
        raise ModelError("This file holds no Stable Diffusion UNet ('model.diffusion_model.*' keys); is it a LoRA?")
    if any(k.startswith(UNET_PREFIX + "label_emb.") for k in unet):
        return "sdxl"
    widths = {tensors[k].shape[-1] for k in unet if k.endswith("attn2.to_k.weight")}
    if 1024 in widths or any(k.startswith("cond_stage_model.model.") for k in tensors):
        return "sd2"
    return "sd1"


def lora_targets(lora: LoraFile, tensors: Mapping[str, torch.Tensor]) -> dict[str, str]:
    """Each kohya prefix of `lora` → the checkpoint key of the weight it changes. Refuses a layer it cannot place.
    A layer may be named the ldm way (SDXL, older host-made files) or the diffusers way (SD1/SD2 files)."""
    paths = [
        k[len(UNET_PREFIX) : -len(".weight")] for k in tensors if k.startswith(UNET_PREFIX) and k.endswith(".weight")
    ]
    by_prefix = {kohya_prefix(p): f"{UNET_PREFIX}{p}.weight" for p in paths}
    by_prefix |= {kohya_prefix(d): f"{UNET_PREFIX}{p}.weight" for p, d in ldm_to_diffusers(paths).items()}
    if missing := [prefix for prefix in lora.weights if prefix not in by_prefix]:
        raise ModelError(
            f"{len(missing)} of the LoRA's {len(lora.weights)} layers have no weight in this checkpoint "
            f"(e.g. {missing[0]}); it was made for a model with another UNet layout."
        )
    return {prefix: by_prefix[prefix] for prefix in lora.weights}


def merge_lora(tensors: dict[str, torch.Tensor], lora: LoraFile, strength: float = 1.0) -> dict[str, torch.Tensor]:
    """`tensors` with `W + strength * alpha / rank * up @ down` in every layer the LoRA trains (float32 arithmetic,
    stored in each weight's own dtype); the other tensors are the same objects."""
    out = dict(tensors)
    for prefix, key in lora_targets(lora, tensors).items():
        weight = tensors[key]
        delta = lora.weights[prefix].delta() * strength
        if delta.numel() != weight.numel():
            raise ModelError(
                f"The LoRA's layer {prefix} is {tuple(delta.shape)}, the checkpoint's {key} is {tuple(weight.shape)}: "
                "the LoRA was made for a model of another size."
            )
        out[key] = (weight.float() + delta.reshape(weight.shape)).to(weight.dtype).contiguous()
    return out


def apply_lora_to_checkpoint(
    model: str | Path, lora_path: str | Path, out: str | Path, strength: float = 1.0
) -> dict[str, object]:
    """Write `out`: the single-file checkpoint `model` with the erasure LoRA merged in at `strength`, its other
    tensors, dtypes and header kept, and what was erased added to the header. Returns a summary for the CLI."""
    model, lora_path, out = Path(model), Path(lora_path), Path(out)
    if out.suffix != ".safetensors":
        raise ConfigError(f"--out must be a .safetensors file; got {out.name!r}.")
    if out.exists() or out.resolve() == model.resolve():
        raise ConfigError(f"{out} already exists; choose another --out (the input checkpoint is never replaced).")
    if not out.parent.is_dir():
        raise ConfigError(f"The folder of --out does not exist: {out.parent}.")
    if not model.is_file():
        raise ConfigError(f"Checkpoint not found: {model}.")
    lora_tensors, lora_header = read_safetensors(lora_path)
    if stray := [k for k in lora_tensors if not k.startswith(LORA_PREFIX_UNET + "_")]:
        raise ModelError(f"{lora_path.name} has layers outside the UNet ({stray[0]}); only UNet LoRAs are merged.")
    lora = lora_from_tensors(lora_tensors, lora_header, lora_path.name)
    tensors, header = read_safetensors(model)
    arch = checkpoint_arch(tensors)
    if lora.arch is not None and lora.arch != arch:
        raise ModelError(
            f"{lora_path.name} was made for {ARCH_NAMES.get(lora.arch, lora.arch)}, but {model.name} is an "
            f"{ARCH_NAMES[arch]} checkpoint. Erase again on an {ARCH_NAMES[arch]} model, or merge into an "
            f"{ARCH_NAMES.get(lora.arch, lora.arch)} checkpoint."
        )
    merged = merge_lora(tensors, lora, strength)
    info = lora.info()
    metadata = dict(header)
    metadata.update({k: v for k, v in lora.metadata.items() if k.startswith(META_PREFIX)})
    metadata[META_PREFIX + "merged"] = jsonsafe.dumps(
        {"lora": lora_path.name, "strength": strength, "layers": len(lora.weights), "base_checkpoint": model.name}
    )
    with atomic_write(out) as tmp:
        save_file(merged, str(tmp), metadata)
    return {"arch": arch, "method": info.get("method"), "erased": info.get("erased", []), "layers": len(lora.weights)}
