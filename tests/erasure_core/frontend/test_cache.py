"""Cache keys change with everything that decides the LoRA, and only with that; damaged entries are retrained."""

from pathlib import Path

import torch

from erasure_core import defaults
from erasure_core.config import make_config
from erasure_core.frontend import cache


def test_key_depends_on_model_text_and_settings_only():
    config = make_config("esd", erase=("cat",), steps=10)
    key = cache.cache_key("model-a", "text-a", config)
    assert key == cache.cache_key("model-a", "text-a", make_config("esd", erase=("cat",), steps=10))
    assert key != cache.cache_key("model-b", "text-a", config)
    assert key != cache.cache_key("model-a", "text-b", config)
    assert key != cache.cache_key("model-a", "text-a", make_config("esd", erase=("cat",), steps=11))
    assert key != cache.cache_key("model-a", "text-a", make_config("esd", erase=("cat",), steps=10, seed=1))
    assert key != cache.cache_key(
        "model-a", "text-a", make_config("esd", erase=("cat",), erase_weights=(2.0,), steps=10)
    )


def test_key_follows_what_auto_settings_resolve_to():
    """A LoRA cached under an 'auto' is the one its resolved settings train (tested in the engine to be identical),
    so an engine whose 'auto' resolves differently does not reuse it."""
    auto = make_config("age", erase=("cat",), steps=500)  # the joint step: 16 refreshes, the noisiest 6 fresh
    key = cache.cache_key("m", "t", auto)
    resolved_alike = make_config(
        "age",
        erase=("cat",),
        steps=500,
        joint_step=True,
        pool_refreshes=defaults.AGE_JOINT_REFRESHES,
        pool_fresh_steps=defaults.AGE_JOINT_FRESH_STEPS,
    )
    assert key == cache.cache_key("m", "t", resolved_alike)
    other = make_config("age", erase=("cat",), steps=500, pool_fresh_steps=defaults.AGE_ALTERNATING_FRESH_STEPS)
    assert key != cache.cache_key("m", "t", other)


def test_text_fingerprint_follows_the_encodings():
    a = torch.randn(2, 77, 8, generator=torch.Generator().manual_seed(0))
    assert cache.tensors_fingerprint([a]) == cache.tensors_fingerprint([a.clone()])
    assert cache.tensors_fingerprint([a]) != cache.tensors_fingerprint([a * 1.001])
    assert cache.tensors_fingerprint([a]) != cache.tensors_fingerprint([a.reshape(2, 8, 77)])


def test_a_damaged_entry_is_ignored(tmp_path: Path):
    store = cache.LoraCache(tmp_path / "c")
    assert store.get("k") is None
    store.put_path("k").write_bytes(b"not a safetensors file")
    assert store.get("k") is None
