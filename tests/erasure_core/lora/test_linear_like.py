"""Linear layers that are not `nn.Linear` (Forge builds its UNet from such a class) train like any other."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from erasure_core import erase, make_config
from erasure_core.backends.diffusers_backend import DiffusersBackend
from erasure_core.layers import is_linear_like, select_modules
from erasure_core.lora.adapter import has_lora, load_lora_weights, remove_lora


class PlainLinear(nn.Module):
    """Like Forge's `ForgeOperations.Linear`: an `nn.Module` with in/out features and a weight, no `nn.Linear`."""

    def __init__(self, source: nn.Linear) -> None:
        super().__init__()
        self.in_features, self.out_features = source.in_features, source.out_features
        self.weight = nn.Parameter(source.weight.detach().clone(), requires_grad=False)
        self.bias = None if source.bias is None else nn.Parameter(source.bias.detach().clone(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x, self.weight, self.bias)


def _swap_cross_attention(unet: nn.Module) -> list[str]:
    names = [n for n, m in unet.named_modules() if ".attn2.to_" in n and isinstance(m, nn.Linear)]
    for name in names:
        parent, _, child = name.rpartition(".")
        setattr(unet.get_submodule(parent), child, PlainLinear(unet.get_submodule(name)))
    return names


def test_only_layers_shaped_like_linear_count() -> None:
    assert is_linear_like(PlainLinear(nn.Linear(3, 2)))
    assert not is_linear_like(nn.Linear(3, 2))  # a real nn.Linear is handled as one
    odd = PlainLinear(nn.Linear(3, 2))
    odd.out_features = 5  # a weight that does not match the declared features is not a linear layer
    assert not is_linear_like(odd) and not is_linear_like(nn.LayerNorm(3))


@pytest.mark.parametrize("method", ["esd", "uce"])
def test_a_unet_of_plain_linear_layers_is_erased_and_handed_back(sd1_backend: DiffusersBackend, method: str) -> None:
    unet = sd1_backend.unet
    swapped = _swap_cross_attention(unet)
    assert set(select_modules(unet.named_modules(), "xattn")) >= set(swapped)
    before = {k: v.clone() for k, v in unet.state_dict().items()}
    x = torch.randn((1, *sd1_backend.latent_shape()), generator=torch.Generator().manual_seed(0))
    t, cond = torch.tensor([500]), sd1_backend.encode_prompts(["cat"])
    with torch.no_grad():
        original = sd1_backend.predict_noise(x, t, cond)

    settings = {"steps": 3, "ddim_steps": 5, "lr": 1e-2} if method == "esd" else {}
    result = erase(sd1_backend, make_config(method, erase=["cat"], audit_samples=0, **settings))

    assert not has_lora(unet) and all(isinstance(unet.get_submodule(n), PlainLinear) for n in swapped)
    assert all(torch.equal(before[k], v) for k, v in unet.state_dict().items())
    assert set(result.weights) & set(swapped)
    load_lora_weights(unet, result.weights)
    try:
        with torch.no_grad():
            edited = sd1_backend.predict_noise(x, t, cond)
    finally:
        remove_lora(unet)
    assert not torch.allclose(edited, original, atol=1e-6)
