"""Random-weight models for the speed benchmark, built from configs in code (speed does not depend on the weights).

`sd15` and `sdxl` use the published UNet and text-encoder shapes of Stable Diffusion 1.5 and SDXL base; `small` is
SD1.5's layout at a fraction of its width (a CPU-sized SD); `tiny` is the test suite's model; `miniworld` is the
shipped demo model. The tokenizers are CLIP BPE tokenizers over a seeded synthetic word list as long as the
default search vocabulary, so that EAP/AGE's candidate search encodes as many words as it would on a real model.
"""

from __future__ import annotations

import random
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from diffusers import UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from erasure_core.backends.diffusers_backend import DiffusersBackend
from erasure_core.defaults import MINIWORLD_RECIPE
from erasure_core.testing import WORDS, sd_scheduler, tiny_sd1, write_clip_tokenizer

SD15_UNET = {
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "layers_per_block": 2,
    "block_out_channels": (320, 640, 1280, 1280),
    "down_block_types": ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    "up_block_types": ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    "cross_attention_dim": 768,
    "attention_head_dim": 8,
}
SDXL_UNET = {
    "sample_size": 128,
    "in_channels": 4,
    "out_channels": 4,
    "layers_per_block": 2,
    "block_out_channels": (320, 640, 1280),
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    "transformer_layers_per_block": (1, 2, 10),
    "attention_head_dim": (5, 10, 20),
    "cross_attention_dim": 2048,
    "use_linear_projection": True,
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": 256,
    "projection_class_embeddings_input_dim": 2816,
}
# SD1.5's layout at a quarter of its width and a 256 px image (32x32 latent), with a 4-layer text encoder.
SMALL_UNET = {
    **SD15_UNET,
    "sample_size": 32,
    "block_out_channels": (64, 128, 256, 256),
    "cross_attention_dim": 256,
}
CLIP_L = {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12}
CLIP_BIG_G = {"hidden_size": 1280, "intermediate_size": 5120, "num_hidden_layers": 32, "num_attention_heads": 20}
SMALL_CLIP = {"hidden_size": 256, "intermediate_size": 1024, "num_hidden_layers": 4, "num_attention_heads": 4}


def synthetic_words(n: int, seed: int = 0) -> list[str]:
    """`WORDS` followed by distinct random lower-case words, n in all."""
    rng = random.Random(seed)
    words = dict.fromkeys(WORDS)
    while len(words) < n:
        words["".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=rng.randint(3, 9)))] = None
    return list(words)[:n]


def _text_encoder(spec: dict, vocab_size: int, projection: bool = False) -> torch.nn.Module:
    config = CLIPTextConfig(
        vocab_size=vocab_size,
        max_position_embeddings=77,
        projection_dim=spec["hidden_size"],
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=2,
        **spec,
    )
    return CLIPTextModelWithProjection(config) if projection else CLIPTextModel(config)


def _build(unet_config: dict, encoders: list[dict], words: int, device: str, name: str) -> DiffusersBackend:
    folder = Path(tempfile.mkdtemp(prefix="speed-tok-"))
    vocabulary = synthetic_words(words)
    tokenizers = [write_clip_tokenizer(folder / f"tok{i}", vocabulary, 77) for i in range(len(encoders))]
    with torch.device(device):  # initialise on the device: SDXL's 2.6B parameters take minutes to init on a CPU
        torch.manual_seed(0)
        unet = UNet2DConditionModel(**unet_config)
        text = [
            _text_encoder(spec, len(tok), projection=i == 1)
            for i, (spec, tok) in enumerate(zip(encoders, tokenizers, strict=True))
        ]
    unet.eval()
    for encoder in text:
        encoder.eval()
    second = {"text_encoder_2": text[1], "tokenizer_2": tokenizers[1]} if len(text) > 1 else {}
    return DiffusersBackend(
        unet, text[0], tokenizers[0], sd_scheduler(), force_zeros_for_empty_prompt=bool(second), name=name, **second
    )


def sd15(device: str) -> DiffusersBackend:
    return _build(SD15_UNET, [CLIP_L], 20000, device, "sd15-random")


def sdxl(device: str) -> DiffusersBackend:
    return _build(SDXL_UNET, [CLIP_L, CLIP_BIG_G], 20000, device, "sdxl-random")


def small(device: str) -> DiffusersBackend:
    return _build(SMALL_UNET, [SMALL_CLIP], 2000, device, "small-sd-random")


def tiny(device: str) -> DiffusersBackend:
    pipe = tiny_sd1(Path(tempfile.mkdtemp(prefix="speed-tiny-")))
    pipe.to(device)
    return DiffusersBackend.from_pipeline(pipe, name="tiny-random")


def miniworld(device: str) -> DiffusersBackend:
    from erasure_core.demo import load_demo

    return load_demo(device).backend


MODELS: dict[str, Callable[[str], DiffusersBackend]] = {
    "tiny": tiny,
    "small": small,
    "miniworld": miniworld,
    "sd15": sd15,
    "sdxl": sdxl,
}

# Settings a model runs with by default where they differ from the engine's defaults: the demo model's own recipe
# (what `--model demo` and the miniature-world benchmark use).
RECIPES: dict[str, dict] = {"miniworld": dict(MINIWORLD_RECIPE)}
