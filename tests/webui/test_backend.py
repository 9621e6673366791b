"""The WebUI backends against fakes of A1111's and Forge's loaded models: what they predict, what they refuse, and
that the loaded model comes back exactly as it was after a finished, failed or cancelled run."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from a1111.backend import (
    SDXL_POOLED_WIDTH,
    A1111Backend,
    ForgeBackend,
    borrowed_model,
    webui_architecture,
)
from erasure_core import Callbacks, Cancelled, ModelError, NumericalError, erase, make_config
from erasure_core.lora.adapter import has_lora, load_lora_weights, remove_lora
from erasure_core.lora.export import load_lora, weights_for_modules
from erasure_core.lora.keys import kohya_key_map
from erasure_core.trainer import export_lora

from .fakes import FakeA1111Model, FakeFlux, FakeForgeModel, FakeLoraExtension, ddpm_alphas

QUICK = {"steps": 3, "ddim_steps": 4, "audit_samples": 1, "audit_ddim_steps": 4, "resolution": 64, "lr": 5e-3}


def snapshot(unet: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in unet.state_dict().items()}


def assert_same(unet: torch.nn.Module, before: dict[str, torch.Tensor]) -> None:
    after = unet.state_dict()
    assert after.keys() == before.keys() and not has_lora(unet)
    assert all(torch.equal(after[k], before[k]) for k in before)


def run(sd_model, networks=None, callbacks=None, **settings):
    load = sd_model.load_model_gpu if isinstance(sd_model, FakeForgeModel) else None
    config = make_config(settings.pop("method", "esd"), erase=["cat"], keep=["dog"], **{**QUICK, **settings})
    with borrowed_model(sd_model, networks, load, clip_skip=2) as backend:
        return backend, erase(backend, config, callbacks)


@pytest.mark.parametrize("arch", ["sd1", "sd2", "sdxl"])
def test_a1111_model_trains_a_lora_named_as_sd_scripts_names_it_and_is_handed_back_unchanged(arch: str) -> None:
    sd_model = FakeA1111Model(arch, v_prediction=arch == "sd2")
    unet = sd_model.model.diffusion_model
    before, grads = snapshot(unet), {n: p.requires_grad for n, p in unet.named_parameters()}
    backend, result = run(sd_model)
    assert isinstance(backend, A1111Backend) and backend.arch == arch and sd_model.apply_model_calls > 0
    assert_same(unet, before)
    assert {n: p.requires_grad for n, p in unet.named_parameters()} == grads  # as ldm built them
    assert result.losses and all(map(torch.isfinite, map(torch.tensor, result.losses)))
    keys = result.kohya_state_dict()
    # the ldm module input_blocks.1.1 written as sd-scripts writes it: diffusers paths for SD1/SD2, ldm for SDXL
    layer = "input_blocks_1_1" if arch == "sdxl" else "down_blocks_0_attentions_0"
    assert f"lora_unet_{layer}_transformer_blocks_0_attn2_to_k.lora_down.weight" in keys
    assert result.audit is not None and result.audit.rows[0]["erasure"] > 0  # the erased prompt moved


def test_a_saved_lora_reloads_onto_the_same_webui_model_and_reproduces_the_edit(tmp_path) -> None:
    sd_model = FakeA1111Model("sd1")
    backend, result = run(sd_model)
    path = export_lora(result, tmp_path / "no-cat.safetensors")
    unet = sd_model.model.diffusion_model
    names = [n for n, _ in unet.named_modules()]
    shapes = {n: tuple(m.weight.shape) for n, m in unet.named_modules() if n in result.weights}
    weights = weights_for_modules(load_lora(path), kohya_key_map(names, "sd1", "ldm"), shapes)
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    cond = backend.encode_prompts(["cat"])
    predictions = []
    for lora in (result.weights, weights):
        load_lora_weights(unet, lora)
        try:
            with torch.no_grad():
                predictions.append(backend.predict_noise(x, torch.tensor([500]), cond))
        finally:
            remove_lora(unet)
    assert torch.allclose(predictions[0], predictions[1], atol=1e-3)  # the file holds fp16 tensors

    # A file an earlier version wrote with the ldm spelling (lora_unet_input_blocks_...) still loads here.
    older = load_lora(path)
    key_map = kohya_key_map(names, "sd1", "ldm")
    spelled = {key_map[name]: "lora_unet_" + name.replace(".", "_") for name in result.weights}
    assert any(new != old for new, old in spelled.items())
    older = replace(older, weights={spelled[k]: w for k, w in older.weights.items()})
    assert weights_for_modules(older, key_map, shapes).keys() == weights.keys()


def test_a1111_trains_on_the_checkpoint_not_on_a_lora_a_generation_left_active() -> None:
    sd_model, networks = FakeA1111Model("sd1"), FakeLoraExtension()
    networks.loaded_networks.append("a LoRA from the last generation")
    seen = []
    run(sd_model, networks.loaded_networks, Callbacks(on_step=lambda *_: seen.append(list(networks.loaded_networks))))
    assert seen and all(active == [] for active in seen)
    assert networks.loaded_networks == ["a LoRA from the last generation"]  # the next generation gets it back


@pytest.mark.parametrize("arch", ["sd1", "sdxl"])
def test_forge_trains_on_the_unpatched_unet_built_in_inference_mode(arch: str) -> None:
    sd_model = FakeForgeModel(arch)
    original, patched = sd_model.forge_objects_original.unet, sd_model.forge_objects.unet
    unet = original.model.diffusion_model
    assert next(unet.parameters()).is_inference()
    before = snapshot(unet)
    seen = []
    backend, result = run(sd_model, callbacks=Callbacks(on_step=lambda *_: seen.append(sd_model.forge_objects.unet)))
    assert isinstance(backend, ForgeBackend) and sd_model.loaded == [original]
    assert seen and all(p is original for p in seen)  # the run's text and UNet come from the unpatched objects
    assert sd_model.forge_objects.unet is patched  # and the WebUI gets its own objects back
    assert sd_model.clip_skip == 2  # the WebUI's clip skip, set before encoding
    assert_same(unet, before)
    assert result.audit.rows[0]["erasure"] > 0


def test_forge_v_prediction_gives_the_same_noise_as_the_unet_it_wraps() -> None:
    sd_model = FakeForgeModel("sd1", v_prediction=True)
    with borrowed_model(sd_model, None, sd_model.load_model_gpu) as backend:
        assert backend.v_prediction and backend.latent_shape() == (4, 64, 64)
        x = torch.randn(2, 4, 8, 8)
        t = torch.tensor([100, 800])
        cond = backend.encode_prompts(["cat", "dog"])
        with torch.no_grad():
            eps = backend.predict_noise(x, t, cond)
            v = backend.kmodel.diffusion_model(x, t, context=cond.context)
        a = ddpm_alphas()[t][:, None, None, None]
        assert torch.allclose(eps, a.sqrt() * v + (1 - a).sqrt() * x, atol=1e-4)


def test_sdxl_adm_vector_is_the_prompts_pooled_text_and_the_latents_size() -> None:
    sd_model = FakeA1111Model("sdxl")
    with borrowed_model(sd_model) as backend:
        cond = backend.encode_prompts(["cat", "a dog"])
        assert cond.pooled.shape == (2, SDXL_POOLED_WIDTH) and cond.context.shape[1] == 77
        x = torch.randn(2, 4, 16, 12)
        vector = backend._adm(cond, x)
        expected = sd_model.get_learned_conditioning(
            type("P", (list,), {"width": 96, "height": 128})(["cat", "a dog"])
        )
        assert torch.allclose(vector, expected["vector"])
        assert cond.lengths.tolist() == [3, 4]  # start, words, end (UCE reads the last word)


def test_vocabulary_comes_from_the_webuis_tokenizer() -> None:
    for sd_model in (FakeA1111Model("sd1"), FakeA1111Model("sdxl"), FakeForgeModel("sd1")):
        load = sd_model.load_model_gpu if isinstance(sd_model, FakeForgeModel) else None
        with borrowed_model(sd_model, None, load) as backend:
            words = backend.vocabulary()
        assert "cat" in words and "ing" not in words and words == sorted(words, key=words.index)


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (None, "No model is loaded"),
        (FakeFlux(), "Flux"),
        (type("SD3Inferencer", (), {"is_sd3": True})(), "SD3"),
    ],
)
def test_unsupported_models_are_refused_by_name(model, message: str) -> None:
    with pytest.raises(ModelError, match=message), borrowed_model(model):
        pass


def test_a_webui_that_moves_the_unet_between_devices_is_refused() -> None:
    sd_model = FakeA1111Model("sdxl")
    sd_model.lowvram = True  # --medvram / --lowvram
    with pytest.raises(ModelError, match="--medvram or --lowvram"), borrowed_model(sd_model):
        pass


def test_inpainting_and_refiner_models_are_refused() -> None:
    inpaint = FakeA1111Model("sd1")
    inpaint.model.conditioning_key = "hybrid"
    with pytest.raises(ModelError, match="text-to-image"):
        webui_architecture(inpaint)
    refiner = FakeA1111Model("sdxl")
    attn = refiner.model.diffusion_model.input_blocks[1][1].transformer_blocks[0].attn2
    attn.to_k = torch.nn.Linear(1280, attn.to_k.out_features, bias=False)
    with pytest.raises(ModelError, match="refiner"), borrowed_model(refiner):
        pass


@pytest.mark.parametrize("host", ["a1111", "forge"])
def test_failed_and_cancelled_runs_hand_the_model_back_unchanged(host: str, monkeypatch) -> None:
    sd_model = FakeA1111Model("sd1") if host == "a1111" else FakeForgeModel("sd1")
    unet = (
        sd_model.model.diffusion_model
        if host == "a1111"
        else sd_model.forge_objects_original.unet.model.diffusion_model
    )
    networks = FakeLoraExtension()
    networks.loaded_networks.append("active")
    before, objects = snapshot(unet), getattr(sd_model, "forge_objects", None)

    with pytest.raises(Cancelled, match="training at step 1 of 3"):
        steps: list[int] = []
        callbacks = Callbacks(on_step=lambda step, total, info: steps.append(step), should_stop=lambda: 1 in steps)
        run(sd_model, networks.loaded_networks, callbacks)
    assert_same(unet, before)

    monkeypatch.setattr(ForgeBackend if host == "forge" else A1111Backend, "predict_noise", _nan_predictions)
    with pytest.raises(NumericalError):
        run(sd_model, networks.loaded_networks)
    assert_same(unet, before)
    assert networks.loaded_networks == ["active"] and getattr(sd_model, "forge_objects", None) is objects
    if host == "a1111":
        assert all(p.requires_grad for p in unet.parameters())


def _nan_predictions(self, x_t, timesteps, cond):
    return torch.full_like(x_t, float("nan"))
