"""What hosts built on ComfyUI's model code share: sigma-space models and weights loaded in inference mode.

ComfyUI's `BaseModel.apply_model` and Forge's `KModel.apply_model` (Forge took it from ComfyUI) both take the
k-diffusion input `x = x0 + sigma * eps` at a noise level sigma and return the denoised x0. The engine works on
DDPM latents at integer timesteps, so the two meet through the model's own sigma table: `x_t = x / sqrt(1 + sigma^2)`
and `eps = (x - denoised) / sigma` for every parameterisation, v-prediction included.

Both hosts also build or load their weights under `torch.inference_mode()`, and autograd cannot save inference
tensors for the backward pass through frozen layers (hosts.md §2.5): `make_autograd_safe` swaps them for ordinary
tensors with the same values. Forge's UNet, written for sampling only, also adds to activations in place
(`x += n`) after a layer saved them for its backward pass; `saved_activations_copied` keeps those copies intact.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn


def make_autograd_safe(module: nn.Module) -> int:
    """Replace inference-tensor parameters and buffers by ordinary copies (same values); returns how many.

    Must run outside inference mode. One tensor is copied at a time, so the extra memory is one tensor's worth.
    """
    replaced = 0
    with torch.inference_mode(False):
        for sub in module.modules():
            for name, param in list(sub.named_parameters(recurse=False)):
                if param.is_inference():
                    setattr(sub, name, nn.Parameter(param.detach().clone(), requires_grad=False))
                    replaced += 1
            for name, buf in list(sub.named_buffers(recurse=False)):
                if buf is not None and buf.is_inference():
                    sub._buffers[name] = buf.clone()
                    replaced += 1
    return replaced


@contextlib.contextmanager
def saved_activations_copied() -> Iterator[None]:
    """Autograd keeps a copy of every tensor it saves for the backward pass, except parameters (the frozen weights,
    which nothing modifies), so a forward that modifies activations in place afterwards still differentiates
    exactly. Costs about one more copy of the saved activations."""

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        return tensor if isinstance(tensor, nn.Parameter) else tensor.clone()

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        yield


def alphas_from_sigmas(sigmas: torch.Tensor) -> torch.Tensor:
    """The DDPM schedule alpha-bar of a k-diffusion sigma table (sigma^2 = (1 - a) / a)."""
    return 1.0 / (1.0 + sigmas.float() ** 2)


def eps_from_denoiser(
    apply_model: Callable[..., torch.Tensor],
    sigmas: torch.Tensor,
    x_t: torch.Tensor,
    timesteps: torch.Tensor,
    **conditioning: Any,
) -> torch.Tensor:
    """Noise prediction at DDPM latents `x_t` and integer `timesteps` from a model that returns the denoised x0.

    `apply_model(x, sigma, **conditioning)` is called with the k-diffusion input; `sigmas` is its table by timestep.
    """
    sigma = sigmas[timesteps.to(sigmas.device)].to(x_t.device)
    x = x_t * (sigma**2 + 1).sqrt()[:, None, None, None]
    denoised = apply_model(x, sigma, **conditioning)
    return (x - denoised.to(x.dtype)) / sigma[:, None, None, None]
