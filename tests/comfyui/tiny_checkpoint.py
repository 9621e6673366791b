"""A tiny checkpoint that ComfyUI itself detects as SD1.5, built from ComfyUI's own classes (never downloaded).

Run inside a process that can import ComfyUI (`python tiny_checkpoint.py OUT.safetensors`). The UNet is one level
of 320 channels with one transformer block (SD15's detection only pins context_dim 768, 320 base channels and
conv proj_in/out, hosts.md §8); the text encoder is the full CLIP-L (ComfyUI always builds it, and missing keys
would stay uninitialised); the VAE is TAESD, which ComfyUI picks when its keys are present. Every tensor gets
seeded random values, since ComfyUI's ops do not initialise weights.
"""

from __future__ import annotations

import sys

import torch

UNET_CONFIG = {
    "image_size": 32,
    "model_channels": 320,
    "context_dim": 768,
    "channel_mult": [1],
    "num_res_blocks": [1],
    "transformer_depth": [1],
    "transformer_depth_output": [1, 1],
    "transformer_depth_middle": 1,
    "use_spatial_transformer": True,
    "legacy": False,
    "use_linear_in_transformer": False,
    "adm_in_channels": None,
    "num_heads": 8,
    "in_channels": 4,
    "out_channels": 4,
    "use_temporal_attention": False,
    "use_temporal_resblock": False,
}


def _fill(state: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        if not value.is_floating_point():
            out[key] = value.clone()
            continue
        if value.ndim == 0:
            tensor = torch.ones(())
        elif key.endswith("bias"):
            tensor = torch.randn(value.shape, generator=generator) * 0.01
        elif value.ndim == 1:  # norm scales
            tensor = 1.0 + 0.05 * torch.randn(value.shape, generator=generator)
        else:
            fan_in = max(1, value[0].numel())
            tensor = torch.randn(value.shape, generator=generator) / fan_in**0.5
        out[key] = tensor.to(torch.float16)
    return out


def build_sd15_checkpoint(path: str, seed: int = 0) -> None:
    import comfy.sd1_clip
    import comfy.supported_models
    import comfy.taesd.taesd
    from safetensors.torch import save_file

    generator = torch.Generator().manual_seed(seed)
    with torch.device("meta"):
        unet = comfy.supported_models.SD15(dict(UNET_CONFIG)).get_model({}).diffusion_model
        clip = comfy.sd1_clip.SD1ClipModel(device="meta")
    state: dict[str, torch.Tensor] = {}
    for key, value in unet.state_dict().items():
        state["model.diffusion_model." + key] = torch.empty(value.shape, dtype=torch.float32)
    for key, value in clip.state_dict().items():
        if key.endswith("position_ids"):
            continue
        state["cond_stage_model." + key[len("clip_l.") :]] = torch.empty(value.shape, dtype=torch.float32)
    with torch.device("meta"):
        taesd = comfy.taesd.taesd.TAESD()
    for key, value in taesd.state_dict().items():
        if key.startswith(("taesd_encoder.", "taesd_decoder.")):
            state["first_stage_model." + key] = torch.empty(value.shape, dtype=torch.float32)
    save_file(_fill(state, generator), path)


if __name__ == "__main__":
    build_sd15_checkpoint(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 0)
