"""The sigma-space helpers ComfyUI's and Forge's backends share."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from erasure_core.backends.kdiffusion import (
    alphas_from_sigmas,
    eps_from_denoiser,
    make_autograd_safe,
    saved_activations_copied,
)


def _schedule() -> tuple[torch.Tensor, torch.Tensor]:
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    alphas = torch.cumprod(1 - betas, 0).float()
    return alphas, ((1 - alphas) / alphas).sqrt()


@pytest.mark.parametrize("parameterisation", ["eps", "v"])
def test_a_denoiser_gives_back_the_ddpm_noise_prediction(parameterisation: str) -> None:
    """A k-diffusion denoiser wrapped around a known DDPM model (eps or v) gives that model's eps at x_t."""
    alphas, sigmas = _schedule()
    assert torch.allclose(alphas_from_sigmas(sigmas), alphas, rtol=1e-5)
    torch.manual_seed(0)
    weight = torch.randn(4, 4)

    def ddpm_eps(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return torch.einsum("oc,bchw->bohw", weight, x_t) * (1 + t.float()[:, None, None, None] / 1000)

    def denoiser(x: torch.Tensor, sigma: torch.Tensor, scale: float) -> torch.Tensor:
        t = (sigmas[None] - sigma[:, None]).abs().argmin(1)  # the host's own sigma -> timestep
        a = alphas[t][:, None, None, None]
        x_t = x / (sigma**2 + 1).sqrt()[:, None, None, None]
        eps = ddpm_eps(x_t, t) * scale
        if parameterisation == "v":  # the model outputs v; the host turns it into x0 itself
            v = a.sqrt() * eps - (1 - a).sqrt() * (x_t - (1 - a).sqrt() * eps) / a.sqrt()
            x0 = a.sqrt() * x_t - (1 - a).sqrt() * v
            return x0
        return x - sigma[:, None, None, None] * eps

    x_t = torch.randn(3, 4, 5, 5)
    t = torch.tensor([10, 500, 990])
    eps = eps_from_denoiser(denoiser, sigmas, x_t, t, scale=0.5)  # keyword conditioning reaches apply_model
    assert torch.allclose(eps, ddpm_eps(x_t, t) * 0.5, atol=1e-4)


def test_inference_weights_become_trainable_through_with_the_same_values() -> None:
    with torch.inference_mode():
        frozen = nn.Sequential(nn.Linear(3, 3), nn.LayerNorm(3))
        frozen.register_buffer("scale", torch.ones(3))
    before = {k: v.clone() for k, v in frozen.state_dict().items()}
    extra = nn.Parameter(torch.zeros(3))
    with pytest.raises(RuntimeError, match="[Ii]nference tensors"):
        (frozen(torch.randn(2, 3) + extra) ** 2).sum().backward()

    assert make_autograd_safe(frozen) == 5  # two weights, two biases, one buffer
    assert make_autograd_safe(frozen) == 0
    (frozen(torch.randn(2, 3) + extra) ** 2).sum().backward()
    assert extra.grad is not None
    after = frozen.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not any(p.requires_grad for p in frozen.parameters())


class InPlace(nn.Module):
    """Written for sampling only, like Forge's transformer blocks: adds to an activation a layer saved."""

    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4)
        self.proj = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor, inplace: bool) -> torch.Tensor:
        x = x + 1
        n = self.proj(self.norm(x))
        if inplace:
            x += n
        else:
            x = x + n
        return self.norm(x) * 2


def test_copied_activations_differentiate_an_in_place_forward_exactly() -> None:
    torch.manual_seed(0)
    model, lora = InPlace().requires_grad_(False), nn.Parameter(torch.randn(3, 4))
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        model(lora, inplace=True).sum().backward()
    lora.grad = None
    with saved_activations_copied():
        loss = (model(lora, inplace=True) ** 2).sum()
    loss.backward()
    grad, lora.grad = lora.grad.clone(), None
    (model(lora, inplace=False) ** 2).sum().backward()
    assert torch.allclose(grad, lora.grad)
