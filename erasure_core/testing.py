"""Tiny random Stable-Diffusion-shaped pipelines built from configs in code (no downloads, CPU, about a second).

Used by the test suite, and by `python -m erasure_core make-tiny-model` so the tool can be tried on a machine that
has no Stable Diffusion weights. Their words mean nothing (random weights); they exercise every code path.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

WORDS = [
    "cat",
    "dog",
    "horse",
    "bird",
    "fish",
    "car",
    "truck",
    "bus",
    "train",
    "boat",
    "church",
    "house",
    "tower",
    "bridge",
    "castle",
    "apple",
    "banana",
    "orange",
    "grape",
    "lemon",
    "piano",
    "guitar",
    "violin",
    "drum",
    "flute",
    "red",
    "blue",
    "green",
    "photo",
    "painting",
    "sketch",
    "style",
    "person",
    "woman",
    "man",
    "tree",
    "flower",
    "river",
    "mountain",
    "city",
    "night",
    "day",
]
MAX_TOKENS = 12


def write_clip_tokenizer(folder: Path, words: Sequence[str] = WORDS, max_tokens: int = MAX_TOKENS) -> CLIPTokenizer:
    """A CLIP BPE tokenizer whose vocabulary has every letter and the whole `words` (lower-case a-z)."""
    folder.mkdir(parents=True, exist_ok=True)
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    tokens = ["<|startoftext|>", "<|endoftext|>", "!"] + letters + [c + "</w>" for c in letters]
    merges: list[str] = []
    for word in words:  # merge left to right: c a -> ca, ca t</w> -> cat</w>
        prefix = word[0]
        for i, char in enumerate(word[1:], start=1):
            piece = char + ("</w>" if i == len(word) - 1 else "")
            merges.append(f"{prefix} {piece}")
            prefix = prefix + piece
            tokens.append(prefix)
    vocab = {tok: i for i, tok in enumerate(dict.fromkeys(tokens))}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(dict.fromkeys(merges)) + "\n")
    return CLIPTokenizer(
        str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=max_tokens, pad_token="!"
    )


def _text_config(vocab_size: int, hidden: int, projection: int | None = None) -> CLIPTextConfig:
    return CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=MAX_TOKENS,
        projection_dim=projection or hidden,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=2,
    )


def _vae() -> AutoencoderKL:
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(8, 8),
        latent_channels=4,
        norm_num_groups=4,
        sample_size=16,
    )


def sd_scheduler() -> DDIMScheduler:
    return DDIMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )


# What both tiny UNets share: an 8x8x4 latent, two levels of 16 and 32 channels.
_TINY_UNET = {
    "sample_size": 8,
    "in_channels": 4,
    "out_channels": 4,
    "block_out_channels": (16, 32),
    "attention_head_dim": 4,
    "norm_num_groups": 8,
}


def tiny_sd1(folder: Path, seed: int = 0) -> StableDiffusionPipeline:
    """SD1-like: two UNet levels, cross-attention in the first, 1x1-conv proj_in like SD1.5."""
    torch.manual_seed(seed)
    tokenizer = write_clip_tokenizer(folder / "tok")
    unet = UNet2DConditionModel(
        **_TINY_UNET,
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=16,
    )
    text_encoder = CLIPTextModel(_text_config(len(tokenizer), 16))
    return StableDiffusionPipeline(
        vae=_vae(),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=sd_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def tiny_sdxl(folder: Path, seed: int = 0) -> StableDiffusionXLPipeline:
    """SDXL-like: two text encoders (pooled + size ids), linear proj_in, two resnets per level as in SDXL.

    Cross-attention at both levels: in SDXL it spans most of the UNet (two of three levels) and carries the text,
    while the pooled embedding reaches the UNet only through the time embedding. With cross-attention at one of
    the two levels, the tiny model's pooled path carried most of the difference between prompts, which no
    cross-attention edit (UCE's, ESD-x's) can remove.
    """
    torch.manual_seed(seed)
    tokenizer = write_clip_tokenizer(folder / "tok")
    tokenizer_2 = write_clip_tokenizer(folder / "tok2")
    unet = UNet2DConditionModel(
        **_TINY_UNET,
        layers_per_block=2,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=4,
        projection_class_embeddings_input_dim=4 * 6 + 16,
        transformer_layers_per_block=1,
    )
    text_encoder = CLIPTextModel(_text_config(len(tokenizer), 16))
    text_encoder_2 = CLIPTextModelWithProjection(_text_config(len(tokenizer_2), 16, projection=16))
    return StableDiffusionXLPipeline(
        vae=_vae(),
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        unet=unet,
        scheduler=sd_scheduler(),
        force_zeros_for_empty_prompt=True,
    )


TINY_MODELS = {"sd1": tiny_sd1, "sdxl": tiny_sdxl}


def save_tiny_model(folder: str | Path, arch: str = "sd1", seed: int = 0) -> Path:
    """Write a tiny random pipeline as a diffusers folder (with model_index.json) and return its path."""
    folder = Path(folder)
    builder = TINY_MODELS.get(arch)
    if builder is None:
        raise ValueError(f"Unknown tiny model {arch!r}; choose one of {sorted(TINY_MODELS)}.")
    with tempfile.TemporaryDirectory() as scratch:
        builder(Path(scratch), seed).save_pretrained(folder, safe_serialization=True)
    return folder
