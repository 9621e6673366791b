"""Before/after images: sample a backend's model with and without a LoRA, decode, and lay the results out in a grid.

Sampling is deterministic DDIM with classifier-free guidance (the same sampler the trainer uses), from noise drawn
from a seeded CPU generator, so "before" and "after" start from identical noise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from .backends.base import Backend, Conditioning
from .files import atomic_write
from .lora.adapter import LoraWeights, load_lora_weights, remove_lora
from .sampling import ddim_sample, ddim_timesteps

if TYPE_CHECKING:  # the trainer imports this module
    from .trainer import EraseResult

_BATCH = 64
PREVIEW_ROWS = 8  # prompts in a before/after grid


def preview_rows(
    erased: Sequence[str],
    kept: Sequence[str] = (),
    neighbours: Mapping[str, Sequence[str]] | None = None,
    limit: int = PREVIEW_ROWS,
) -> list[tuple[str, str]]:
    """The rows of a before/after grid as (role, prompt): the erased concepts, the kept ones, then the erased
    concepts' neighbours as the audit shows them (`neighbours.shown_neighbours`); at most `limit`."""
    rows = [("erased", c) for c in erased] + [("kept", c) for c in kept]
    taken = {p.lower() for _, p in rows}
    for words in (neighbours or {}).values():
        for word in words:
            if word.lower() not in taken:
                taken.add(word.lower())
                rows.append(("neighbour", word))
    return rows[:limit]


def row_label(role: str, prompt: str) -> str:
    """What a grid row shows beside its images: its role and its prompt ("neighbour: banana")."""
    return f"{role}: {prompt}" if role else prompt


@torch.no_grad()
def generate_latents(
    backend: Backend,
    prompts: Sequence[str] | Conditioning,
    seeds: Sequence[int],
    steps: int = 25,
    guidance: float = 5.0,
    resolution: int | None = None,
) -> torch.Tensor:
    """One latent per (prompt, seed) pair, denoised fully by DDIM. `prompts` may be one encoded prompt (a soft
    prompt, say), which every seed then uses."""
    shape = backend.latent_shape(resolution)
    path = (*reversed(ddim_timesteps(backend.alphas_cumprod.shape[0], steps)), 0)
    uncond = backend.encode_prompts([""])
    if isinstance(prompts, Conditioning):
        conds, keys = prompts, [0] * len(seeds)
    else:
        unique = sorted(set(prompts))
        conds = backend.encode_prompts(unique)
        index = {p: i for i, p in enumerate(unique)}
        keys = [index[p] for p in prompts]
    out = []
    for start in range(0, len(seeds), _BATCH):
        chunk_keys, chunk_seeds = keys[start : start + _BATCH], seeds[start : start + _BATCH]
        z = torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(int(s))) for s in chunk_seeds])
        cond = Conditioning.cat([conds.select(k) for k in chunk_keys])
        x, _ = ddim_sample(
            backend.predict_noise, z.to(backend.device), cond, uncond, guidance, path, backend.alphas_cumprod
        )
        out.append(x.float().cpu())
    return torch.cat(out)


@torch.no_grad()
def decode_images(vae: torch.nn.Module, latents: torch.Tensor) -> np.ndarray:
    """uint8 RGB images [N, H, W, 3] from latents in the UNet's (scaled) space."""
    device = next(vae.parameters()).device
    scale = getattr(vae.config, "scaling_factor", 1.0)
    images = []
    for start in range(0, latents.shape[0], _BATCH):
        x = vae.decode(latents[start : start + _BATCH].to(device) / scale).sample
        images.append(((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu())
    return torch.cat(images).numpy()


def generate_images(
    backend: Backend,
    vae: torch.nn.Module,
    prompts: Sequence[str] | Conditioning,
    seeds: Sequence[int],
    lora: LoraWeights | None = None,
    steps: int = 25,
    guidance: float = 5.0,
) -> np.ndarray:
    """Images of the original model, or of the model with `lora` applied (removed again afterwards)."""
    if lora is None:
        return decode_images(vae, generate_latents(backend, prompts, seeds, steps, guidance))
    load_lora_weights(backend.unet, lora)
    try:
        return decode_images(vae, generate_latents(backend, prompts, seeds, steps, guidance))
    finally:
        remove_lora(backend.unet)


def image_grid(
    rows: Sequence[Sequence[np.ndarray]], row_labels: Sequence[str], col_labels: Sequence[str], scale: int = 3
):
    """A labelled grid (PIL image): one row per label, one column per column label; images are upscaled `scale`x."""
    from PIL import Image, ImageDraw

    h, w = rows[0][0].shape[:2]
    cell_h, cell_w = h * scale, w * scale
    label_w = 8 + 7 * max(len(label) for label in row_labels)
    header = 16
    grid = Image.new("RGB", (label_w + cell_w * len(col_labels), header + cell_h * len(rows)), "white")
    draw = ImageDraw.Draw(grid)
    for j, label in enumerate(col_labels):
        draw.text((label_w + j * cell_w + 4, 2), label, fill="black")
    for i, (label, images) in enumerate(zip(row_labels, rows, strict=True)):
        draw.text((4, header + i * cell_h + cell_h // 2 - 6), label, fill="black")
        for j, image in enumerate(images):
            tile = Image.fromarray(image).resize((cell_w, cell_h), Image.Resampling.NEAREST)
            grid.paste(tile, (label_w + j * cell_w, header + i * cell_h))
    return grid


def write_before_after(backend: Backend, result: EraseResult, path: str | Path) -> Path:
    """A before/after grid of a finished run as a PNG (written atomically): the erased, kept and neighbour concepts,
    each row labelled with its role, the same seeds before and after. Needs the model's autoencoder (`backend.vae`)."""
    rows = preview_rows(result.config.erase, result.config.keep, result.neighbours)
    prompts = [prompt for _, prompt in rows]
    seeds = [0, 1, 2]
    grid_prompts = [p for p in prompts for _ in seeds]
    before = generate_images(backend, backend.vae, grid_prompts, seeds * len(prompts))
    after = generate_images(backend, backend.vae, grid_prompts, seeds * len(prompts), lora=result.weights)
    n = len(seeds)
    cells = [[*before[i * n : (i + 1) * n], *after[i * n : (i + 1) * n]] for i in range(len(prompts))]
    columns = [f"before {s}" for s in seeds] + [f"after {s}" for s in seeds]
    path = Path(path)
    with atomic_write(path) as tmp:
        image_grid(cells, [row_label(*row) for row in rows], columns).save(tmp, format="PNG")
    return path
