from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from erasure_core import ModelError
from erasure_core.backends.base import Backend
from erasure_core.backends.diffusers_backend import DiffusersBackend, load_diffusers_model
from erasure_core.testing import save_tiny_model


@pytest.fixture(scope="module")
def sd1_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("m") / "tiny-sd1", "sd1")


def test_loads_a_diffusers_folder_offline(sd1_folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    backend = load_diffusers_model(sd1_folder)
    assert isinstance(backend, Backend)
    assert backend.arch == "sd1" and backend.name == "tiny-sd1" and backend.latent_shape() == (4, 8, 8)
    cond = backend.encode_prompts(["cat", "a dog"])
    assert cond.context.shape == (2, 12, 16) and cond.lengths.tolist() == [3, 4]


def test_loads_sdxl_with_pooled_text_and_zero_unconditional(tmp_path: Path) -> None:
    backend = load_diffusers_model(save_tiny_model(tmp_path / "xl", "sdxl"))
    assert backend.arch == "sdxl"
    cond = backend.encode_prompts(["", "cat"])
    assert cond.pooled.shape == (2, 16) and cond.context.shape == (2, 12, 32)
    assert not cond.context[0].any() and not cond.pooled[0].any() and cond.context[1].any()
    eps = backend.predict_noise(torch.randn(2, 4, 8, 8), torch.tensor([10, 900]), cond)
    assert eps.shape == (2, 4, 8, 8)


def test_v_prediction_is_converted_to_noise(sd1_folder: Path) -> None:
    backend = load_diffusers_model(sd1_folder)
    x, t = torch.randn(1, 4, 8, 8), torch.tensor([500])
    cond = backend.encode_prompts(["cat"])
    with torch.no_grad():
        raw = backend.unet(x, t, encoder_hidden_states=cond.context).sample
        backend.prediction_type = "v_prediction"
        eps = backend.predict_noise(x, t, cond)
    a = backend.alphas_cumprod[500]
    torch.testing.assert_close(eps, a.sqrt() * raw + (1 - a).sqrt() * x)


def test_v_prediction_conversion_agrees_with_diffusers_scheduler(sd1_folder: Path, monkeypatch) -> None:
    """diffusers' own scheduler makes x_t from (x0, noise) and the velocity v a v-prediction model would output;
    the backend must recover exactly that noise from v."""
    from types import SimpleNamespace

    from diffusers import DDPMScheduler

    backend = load_diffusers_model(sd1_folder)
    backend.prediction_type = "v_prediction"
    scheduler = DDPMScheduler.from_config(backend.scheduler.config, prediction_type="v_prediction")
    generator = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(3, 4, 8, 8, generator=generator), torch.randn(3, 4, 8, 8, generator=generator)
    t = torch.tensor([1, 500, 999])
    x_t = scheduler.add_noise(x0, noise, t)
    velocity = scheduler.get_velocity(x0, noise, t)
    cond = backend.encode_prompts(["cat"] * 3)
    monkeypatch.setattr(backend.unet, "forward", lambda *args, **kwargs: SimpleNamespace(sample=velocity))
    eps = backend.predict_noise(x_t, t, cond)
    torch.testing.assert_close(eps, noise, rtol=1e-4, atol=1e-4)


def test_resolution_sets_the_latent_size(sd1_folder: Path) -> None:
    backend = load_diffusers_model(sd1_folder)
    assert backend.latent_shape(64) == (4, 32, 32)  # the tiny VAE downsamples by 2


def test_fingerprint_is_stable_and_tells_models_apart(sd1_folder: Path, tmp_path: Path) -> None:
    a, b = load_diffusers_model(sd1_folder), load_diffusers_model(sd1_folder)
    other = load_diffusers_model(save_tiny_model(tmp_path / "other", "sd1", seed=1))
    assert a.fingerprint() == b.fingerprint() != other.fingerprint()


def test_missing_model_raises(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="Model not found"):
        load_diffusers_model(tmp_path / "nothing")


def test_folder_without_model_index_raises(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="model_index.json"):
        load_diffusers_model(tmp_path)


def test_pickled_checkpoint_is_refused(tmp_path: Path) -> None:
    (tmp_path / "m.ckpt").write_bytes(b"pickle")
    with pytest.raises(ModelError, match="never loads pickles"):
        load_diffusers_model(tmp_path / "m.ckpt")


def test_unreadable_checkpoint_raises(tmp_path: Path) -> None:
    (tmp_path / "m.safetensors").write_bytes(b"\x00\x01broken")
    with pytest.raises(ModelError, match="Could not load the model"):
        load_diffusers_model(tmp_path / "m.safetensors")


def test_checkpoint_without_unet_raises(tmp_path: Path) -> None:
    save_file({"encoder.weight": torch.zeros(2)}, str(tmp_path / "m.safetensors"))
    with pytest.raises(ModelError, match="no Stable Diffusion UNet"):
        load_diffusers_model(tmp_path / "m.safetensors")


def test_scheduler_predicting_samples_is_refused(sd1_folder: Path) -> None:
    backend = load_diffusers_model(sd1_folder)
    backend.scheduler.register_to_config(prediction_type="sample")
    with pytest.raises(ModelError, match="prediction_type"):
        DiffusersBackend(backend.unet, backend.text_encoder, backend.tokenizer, backend.scheduler)


def test_loads_a_single_file_checkpoint_offline_with_a_config_folder(sd1_folder: Path, tmp_path: Path) -> None:
    import diffusers

    from tests.erasure_core.backends.ldm_checkpoint import write_ldm_checkpoint

    path = write_ldm_checkpoint(
        diffusers.StableDiffusionPipeline.from_pretrained(sd1_folder), tmp_path / "model.safetensors"
    )
    single, folder = load_diffusers_model(path, config=sd1_folder), load_diffusers_model(sd1_folder)
    x, t = torch.randn(1, 4, 8, 8), torch.tensor([500])
    with torch.no_grad():
        a = single.predict_noise(x, t, single.encode_prompts(["cat"]))
        b = folder.predict_noise(x, t, folder.encode_prompts(["cat"]))
    assert single.name == "model" and single.arch == "sd1"
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_a_single_file_the_shipped_configs_do_not_fit_says_what_to_pass(
    sd1_folder: Path, tmp_path: Path, monkeypatch
) -> None:
    import diffusers

    from tests.erasure_core.backends.ldm_checkpoint import write_ldm_checkpoint

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-cache"))
    path = write_ldm_checkpoint(
        diffusers.StableDiffusionPipeline.from_pretrained(sd1_folder), tmp_path / "model.safetensors"
    )
    with pytest.raises(ModelError, match="--config-dir"):
        load_diffusers_model(path)


def test_an_sdxl_v_prediction_model_is_erased_in_noise_space(tmp_path: Path) -> None:
    """SDXL v-prediction fine-tunes (NoobAI-XL v-pred): the engine reads the scheduler's prediction type, trains on
    the noise the v output stands for, and erases."""
    from erasure_core import erase, make_config

    folder = save_tiny_model(tmp_path / "xl-v", "sdxl")
    config_path = folder / "scheduler" / "scheduler_config.json"
    config_path.write_text(config_path.read_text().replace('"epsilon"', '"v_prediction"'))
    backend = load_diffusers_model(folder)
    assert backend.arch == "sdxl" and backend.prediction_type == "v_prediction"
    result = erase(backend, make_config("esd", erase=["cat"], keep=["dog"], steps=20, lr=1e-2, audit_samples=2))
    rows = {r["prompt"]: r for r in result.audit.rows}
    assert rows["cat"]["erasure"] > 0.25 and rows["dog"]["drift"] < rows["cat"]["drift"]
