"""Cache keys change with everything that decides the LoRA, and only with that; damaged entries are retrained."""

from pathlib import Path

import torch

from .conftest import pack_module

cache = pack_module("nodes.cache")
make_config = pack_module("erasure_core.config").make_config


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
