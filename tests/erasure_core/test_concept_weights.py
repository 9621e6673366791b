"""Per-concept weights: validated against the concept lists, and a heavier erased concept moves further."""

import pytest
import torch

from erasure_core import ConfigError, EsdConfig, erase
from erasure_core.lora.adapter import load_lora_weights, remove_lora
from tests.conftest import make_backend


def test_weights_default_to_one_per_concept():
    config = EsdConfig(erase=("apple", "car"), keep=("dog",))
    assert config.erase_weights == (1.0, 1.0)
    assert config.keep_weights == (1.0,)


@pytest.mark.parametrize(
    "weights, message",
    [((1.0,), "one weight per concept"), ((1.0, 0.0), "positive"), ((1.0, float("nan")), "positive")],
)
def test_bad_weights_are_refused_with_a_fix(weights, message):
    with pytest.raises(ConfigError, match=message):
        EsdConfig(erase=("apple", "car"), erase_weights=weights)


def test_a_heavier_weight_erases_harder(tmp_path):
    backend = make_backend("sd1", tmp_path / "model")

    def movement(weight: float) -> float:
        cond = backend.encode_prompts(["apple"])
        x = torch.randn(2, *backend.latent_shape(), generator=torch.Generator().manual_seed(1))
        t = torch.tensor([500, 700])
        with torch.no_grad():
            before = backend.predict_noise(x, t, cond.repeat(2))
        config = EsdConfig(erase=("apple",), erase_weights=(weight,), steps=30, lr=3e-3, audit_samples=0, seed=0)
        result = erase(backend, config)
        load_lora_weights(backend.unet, result.weights)
        try:
            with torch.no_grad():
                after = backend.predict_noise(x, t, cond.repeat(2))
        finally:
            remove_lora(backend.unet)
        return float((after - before).norm())

    assert movement(3.0) > 1.3 * movement(0.5)
