"""A full-size random-weight SD1.5 checkpoint in the original single-file layout, for the real-WebUI tests.

A1111 builds a full-size SD1.5 whatever the file holds, so the file must hold every weight at full size (about
2.1 GB in fp16). Shapes come from diffusers' and transformers' own SD1.5 classes, built on the meta device; names
follow the engine's diffusers-to-ldm mapping (`ldm_checkpoint`). Weights are scaled by fan-in so activations stay
finite, and norm biases are not zero: A1111's prompt-emphasis step divides by the mean of the text encoding, which
a zero-bias final layer norm makes exactly zero.
"""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

from erasure_core.single_file import constructor_arguments  # SD1.5's numbers: one place
from tests.erasure_core.backends.ldm_checkpoint import write_ldm_checkpoint


def _randomise(module: torch.nn.Module, generator: torch.Generator) -> None:
    """Materialise a meta-device module with seeded random fp16 weights (see the module docstring)."""
    module.to_empty(device="cpu")
    with torch.no_grad():
        for name, tensor in module.state_dict(keep_vars=True).items():
            if not tensor.is_floating_point():
                continue
            if tensor.ndim == 1:  # norm weights near 1, biases (norms' and layers') small but not zero
                base = 1.0 if name.endswith("weight") else 0.0
                values = base + 0.02 * torch.randn(tensor.shape, generator=generator)
            elif "embedding" in name:
                values = 0.02 * torch.randn(tensor.shape, generator=generator)
            else:
                fan_in = math.prod(tensor.shape[1:])
                values = torch.randn(tensor.shape, generator=generator) / math.sqrt(fan_in)
            tensor.data = values.to(torch.float16)


def write_random_sd15(path: Path, seed: int = 0) -> Path:
    """Write the checkpoint (atomically) and return its path."""
    generator = torch.Generator().manual_seed(seed)
    with torch.device("meta"):
        parts = SimpleNamespace(
            unet=UNet2DConditionModel(**constructor_arguments("sd1", "unet")),
            vae=AutoencoderKL(**constructor_arguments("sd1", "vae")),
            text_encoder=CLIPTextModel(CLIPTextConfig(**constructor_arguments("sd1", "text_encoder"))),
        )
    for module in vars(parts).values():
        _randomise(module, generator)
    tmp = path.with_name(path.name + ".partial")
    write_ldm_checkpoint(
        parts, tmp, extra={"cond_stage_model.transformer.text_model.embeddings.position_ids": torch.arange(77)[None]}
    )
    tmp.replace(path)
    return path
