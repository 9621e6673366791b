from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from erasure_core import ModelError, erase, export_lora, load_lora, make_config
from erasure_core.lora import export as export_module
from tests.conftest import make_backend


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory):
    backend = make_backend("sd1", tmp_path_factory.mktemp("model"))
    return erase(
        backend, make_config("eap", erase=["cat"], keep=["dog"], steps=3, ddim_steps=5, k_closest=10, num_centers=4)
    )


def test_file_holds_only_kohya_unet_tensors_in_fp16(result, tmp_path: Path) -> None:
    path = export_lora(result, tmp_path / "cat.safetensors")
    with safe_open(str(path), framework="pt") as f:
        keys = list(f.keys())
        assert all(k.startswith("lora_unet_") for k in keys)
        assert {k.split(".", 1)[1] for k in keys} == {"lora_down.weight", "lora_up.weight", "alpha"}
        assert all(f.get_tensor(k).dtype == torch.float16 for k in keys)
        assert f.get_tensor(keys[0]).ndim in (0, 2, 4)


def test_metadata_records_how_it_was_made(result, tmp_path: Path) -> None:
    lora = load_lora(export_lora(result, tmp_path / "cat-erased.safetensors"))
    meta, info = lora.metadata, lora.info()
    assert meta["ss_network_module"] == "networks.lora" and meta["ss_base_model_version"] == "sd_v1"
    assert meta["ss_output_name"] == "cat-erased" and meta["ss_network_dim"] == "4"
    assert meta["modelspec.architecture"] == "stable-diffusion-v1/lora"
    assert info["method"] == "eap" and info["erased"] == ["cat"] and info["kept"] == ["dog"]
    assert info["found"]["cat"] and info["steps"] == 3 and info["base_model"] == "tiny-sd1"
    assert info["base_model_fingerprint"] == result.fingerprint and info["version"]
    assert info["config"]["k_closest"] == 10
    # The settings as they trained, every 'auto' resolved (the pool is off for 3 steps), so the file reproduces
    # its run under an engine whose 'auto' rules differ.
    assert info["config"]["pool_refreshes"] == 0 and "auto" not in info["config"].values()
    assert result.config.pool_refreshes == "auto"


def test_reload_gives_the_same_tensors(result, tmp_path: Path) -> None:
    lora = load_lora(export_lora(result, tmp_path / "a.safetensors", dtype=torch.float32))
    by_prefix = {result.key_map[name]: w for name, w in result.weights.items()}
    assert set(lora.weights) == set(by_prefix)
    for prefix, w in lora.weights.items():
        torch.testing.assert_close(w.down, by_prefix[prefix].down)
        assert w.alpha == by_prefix[prefix].alpha


def test_failed_write_leaves_no_file(result, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_save(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(export_module, "save_file", broken_save)
    with pytest.raises(OSError, match="disk full"):
        export_lora(result, tmp_path / "x.safetensors")
    assert list(tmp_path.iterdir()) == []


def test_overwrite_is_atomic(result, tmp_path: Path) -> None:
    path = tmp_path / "x.safetensors"
    path.write_bytes(b"old")
    export_lora(result, path)
    assert load_lora(path).weights and not (tmp_path / "x.safetensors.partial").exists()


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_the_file_gets_the_users_usual_permissions(result, tmp_path: Path, umask: int) -> None:
    """Readable by the other user that runs a shared WebUI or ComfyUI, as a plain write would be (not 0600)."""
    old = os.umask(umask)
    try:
        path = export_lora(result, tmp_path / "shared.safetensors")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_wrong_suffix_raises(result, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=".safetensors"):
        export_lora(result, tmp_path / "x.pt")


def test_missing_lora_file_raises(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not found"):
        load_lora(tmp_path / "nope.safetensors")


def test_unreadable_lora_file_raises(tmp_path: Path) -> None:
    (tmp_path / "bad.safetensors").write_bytes(b"\x00garbage")
    with pytest.raises(ModelError, match="Could not read"):
        load_lora(tmp_path / "bad.safetensors")


def test_file_without_lora_tensors_raises(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    save_file({"model.weight": torch.zeros(2)}, str(tmp_path / "m.safetensors"))
    with pytest.raises(ModelError, match="no kohya UNet LoRA"):
        load_lora(tmp_path / "m.safetensors")
