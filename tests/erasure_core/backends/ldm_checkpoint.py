"""Test helper: write a diffusers SD1 pipeline as an original (ldm) single-file checkpoint.

Only for tests of single-file loading; the UNet part reuses the engine's own diffusers-to-ldm module mapping.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from safetensors.torch import save_file

from erasure_core.lora.keys import diffusers_to_ldm

_VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def _vae_key(key: str, up_blocks: int) -> str:
    key = key.replace("conv_shortcut", "nin_shortcut").replace("conv_norm_out", "norm_out")
    key = re.sub(r"down_blocks\.(\d+)\.resnets\.", r"down.\1.block.", key)
    key = re.sub(r"down_blocks\.(\d+)\.downsamplers\.0\.", r"down.\1.downsample.", key)
    key = re.sub(r"up_blocks\.(\d+)\.", lambda m: f"up.{up_blocks - 1 - int(m.group(1))}.", key)
    key = re.sub(r"(up\.\d+\.)resnets\.", r"\1block.", key).replace("upsamplers.0.", "upsample.")
    key = re.sub(r"mid_block\.resnets\.(\d+)\.", lambda m: f"mid.block_{int(m.group(1)) + 1}.", key)
    for src, dst in _VAE_ATTENTION.items():
        key = key.replace(f"mid_block.attentions.0.{src}.", f"mid.attn_1.{dst}.")
    return key


def write_ldm_checkpoint(pipe, path: Path, extra: dict[str, torch.Tensor] | None = None) -> Path:
    """`extra` adds tensors (e.g. CLIP's position ids, which newer transformers no longer keep in its state)."""
    tensors: dict[str, torch.Tensor] = dict(extra or {})
    unet_modules = diffusers_to_ldm([n for n, _ in pipe.unet.named_modules()], pipe.unet.config.layers_per_block)
    for key, value in pipe.unet.state_dict().items():
        module, _, param = key.rpartition(".")
        tensors[f"model.diffusion_model.{unet_modules[module]}.{param}"] = value
    up_blocks = len(pipe.vae.config.block_out_channels)
    for key, value in pipe.vae.state_dict().items():
        if ".attentions." in key and value.ndim == 2:
            value = value[:, :, None, None]  # ldm's VAE attention uses 1x1 convolutions
        tensors[f"first_stage_model.{_vae_key(key, up_blocks)}"] = value
    for key, value in pipe.text_encoder.state_dict().items():
        key = key if key.startswith("text_model.") else f"text_model.{key}"  # transformers 5 drops the prefix
        tensors[f"cond_stage_model.transformer.{key}"] = value
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))
    return path
