"""The one interface the trainer talks to, so the same training code runs on diffusers, ComfyUI and A1111 models.

A backend wraps a model the host already loaded. It encodes prompts, predicts noise, and exposes the noise
schedule and the UNet module tree that LoRA layers are injected into. It never holds a second copy of the UNet:
the engine gets the frozen model's predictions by disabling its LoRA layers on the same network.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch
from torch import nn


@dataclass(frozen=True)
class Conditioning:
    """A batch of encoded prompts.

    Attributes:
        context: cross-attention states `[B, L, D]` (SD1/2: CLIP token sequence; SDXL: both encoders concatenated).
        pooled: pooled text embedding `[B, P]` (SDXL only, else None).
        lengths: real token count per prompt, start/end tokens included (UCE reads the last subject token).
    """

    context: torch.Tensor
    pooled: torch.Tensor | None = None
    lengths: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.context.shape[0]

    def select(self, index: int | slice | torch.Tensor) -> Conditioning:
        if isinstance(index, int):
            index = slice(index, index + 1)
        return Conditioning(
            self.context[index],
            None if self.pooled is None else self.pooled[index],
            None if self.lengths is None else self.lengths[index],
        )

    @staticmethod
    def cat(items: Sequence[Conditioning]) -> Conditioning:
        pooled = None if items[0].pooled is None else torch.cat([c.pooled for c in items])
        lengths = None if any(c.lengths is None for c in items) else torch.cat([c.lengths for c in items])
        return Conditioning(torch.cat([c.context for c in items]), pooled, lengths)

    def repeat(self, n: int) -> Conditioning:
        return Conditioning.cat([self] * n) if n != 1 else self

    def repeat_each(self, n: int) -> Conditioning:
        """Every prompt n times in a row: [a, b] -> [a, a, b, b] for n = 2."""
        if n == 1:
            return self
        return Conditioning(
            self.context.repeat_interleave(n, 0),
            None if self.pooled is None else self.pooled.repeat_interleave(n, 0),
            None if self.lengths is None else self.lengths.repeat_interleave(n, 0),
        )

    def mix(self, weights: torch.Tensor) -> Conditioning:
        """Weighted sum over the batch (`weights` of shape [B]) → one prompt; keeps the autograd graph of weights."""
        w = weights.to(self.context.dtype)
        context = torch.einsum("b,bld->ld", w, self.context)[None]
        pooled = None if self.pooled is None else (w @ self.pooled)[None]
        return Conditioning(context, pooled, None)

    def detach(self) -> Conditioning:
        return replace(
            self, context=self.context.detach(), pooled=None if self.pooled is None else self.pooled.detach()
        )

    def flat(self) -> torch.Tensor:
        """One vector per prompt, for distances between encodings (EAP/AGE candidate search)."""
        parts = [self.context.flatten(1)]
        if self.pooled is not None:
            parts.append(self.pooled.flatten(1))
        return torch.cat(parts, dim=1)


@runtime_checkable
class Backend(Protocol):
    """What a host adapter provides. Implementations: `DiffusersBackend`; ComfyUI and A1111 adapters live with them.

    Attributes:
        name: human-readable model name (file or folder name), written into LoRA metadata.
        arch: "sd1", "sd2" or "sdxl"; decides the LoRA key format and metadata.
        module_naming: "diffusers" or "ldm": how the names of `unet.named_modules()` are spelled.
        device, dtype: where and in which precision the UNet runs.
        unet: the network LoRA layers are injected into (trained with the LoRA on, frozen with it off).
        alphas_cumprod: the DDPM noise schedule, float32 `[num_train_timesteps]` on `device`.
    """

    name: str
    arch: str
    module_naming: str
    device: torch.device
    dtype: torch.dtype
    unet: nn.Module
    alphas_cumprod: torch.Tensor

    def encode_prompts(self, prompts: Sequence[str]) -> Conditioning:
        """Encode prompts as the host's sampler would (no gradient needed)."""
        ...

    def predict_noise(self, x_t: torch.Tensor, timesteps: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        """Noise prediction epsilon for latents `x_t` `[B, C, H, W]` at integer DDPM `timesteps` `[B]`.

        v-prediction models convert to epsilon here, so the engine works in one parameterisation.
        """
        ...

    def latent_shape(self, resolution: int | None = None) -> tuple[int, int, int]:
        """(channels, height, width) of a latent at `resolution` pixels, or at the model's native size."""
        ...

    def vocabulary(self) -> list[str]:
        """Whole words of the model's tokenizer, most frequent first (EAP/AGE default candidate vocabulary)."""
        ...

    def fingerprint(self) -> str:
        """A short stable hash of the UNet weights, to record which model a LoRA was made on."""
        ...


# Optional capabilities. A backend may define these beyond the protocol; the engine reaches them only through the
# helpers below, so each has one home and a default.
#   encode_text(prompts) -> Conditioning: the text encoders' real encoding, "" included (a sampler's own rule may
#       encode "" otherwise: SDXL pipelines use zeros for the unconditional branch). Default: `encode_prompts`.
#   kohya_aliases() -> dict[str, str]: further kohya prefixes of the host's layers (e.g. ComfyUI accepts both the
#       diffusers-style and the ldm-style name of one layer). Default: none.
#   supports_cuda_graphs: True when `predict_noise` never synchronises with the host. Default: False.
#   cache_folder: Path, where the host keeps the files it caches (ComfyUI: its user folder), for the vocabulary
#       distances of EAP's and AGE's search. Default: the user's cache folder (`distance_cache.cache_dir`).
#   concept_groups: dict[str, list[str]], the concepts the model is known to draw, in groups of alike concepts (the
#       demo model's card): the audit and the before/after grid show an erased concept's group as its neighbours.
#       Default: none (the neighbours are those of the concept search that the text encoder tells from noise).


def encode_text(backend: Backend) -> Callable[[Sequence[str]], Conditioning]:
    """The backend's real text encoding (`encode_text`), else its sampler's (`encode_prompts`)."""
    return getattr(backend, "encode_text", backend.encode_prompts)


def kohya_aliases(backend: Backend) -> dict[str, str]:
    """Other kohya spellings of the backend's layers, if the host knows them."""
    aliases = getattr(backend, "kohya_aliases", None)
    return aliases() if callable(aliases) else {}


def supports_cuda_graphs(backend: Backend) -> bool:
    return bool(getattr(backend, "supports_cuda_graphs", False))


def host_cache_folder(backend: Backend) -> Path | None:
    """The folder the host keeps cached files in, if it declares one."""
    folder = getattr(backend, "cache_folder", None)
    return None if folder is None else Path(folder)


def concept_groups(backend: Backend) -> dict[str, list[str]]:
    """The groups of concepts the model is known to draw, if the backend declares them."""
    return dict(getattr(backend, "concept_groups", None) or {})


class UnetPlacement:
    """A backend's `device` and `dtype`, read off its UNet's weights wherever the host has put them."""

    unet: nn.Module

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.unet.parameters()).dtype


def weights_fingerprint(module: nn.Module, sample: int = 1024) -> str:
    """Hash of every parameter's name, shape and a strided sample of its values: fast even for SDXL, stable across runs."""
    digest = hashlib.sha256()
    for name, param in module.state_dict().items():
        flat = param.detach().reshape(-1)
        step = max(1, flat.numel() // sample)
        digest.update(f"{name}:{tuple(param.shape)}".encode())
        digest.update(flat[::step][:sample].to("cpu", torch.float32).numpy().tobytes())
    return digest.hexdigest()[:16]
