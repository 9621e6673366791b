"""The run around the methods: progress, cancel, errors, restoring the host's model, resume."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from erasure_core import (
    Callbacks,
    Cancelled,
    ConfigError,
    ModelError,
    NumericalError,
    ResourceError,
    erase,
    export_lora,
    load_lora,
    make_config,
)
from erasure_core.backends.diffusers_backend import DiffusersBackend
from erasure_core.callbacks import INFO_CONCEPT, INFO_FOUND, INFO_LOSS, INFO_PREVIEW
from erasure_core.lora.adapter import has_lora, inject_lora
from erasure_core.lora.export import save_lora_file
from erasure_core.resume import load_state, save_state
from tests.conftest import make_backend

QUICK = {"steps": 4, "ddim_steps": 5, "audit_samples": 0}


def _snapshot(backend: DiffusersBackend) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    x = torch.randn((2, *backend.latent_shape()), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = backend.predict_noise(x, torch.tensor([300, 700]), backend.encode_prompts(["cat", "dog"]))
    return {k: v.clone() for k, v in backend.unet.state_dict().items()}, out


def _assert_untouched(backend: DiffusersBackend, before: tuple[dict[str, torch.Tensor], torch.Tensor]) -> None:
    state, out = _snapshot(backend)
    assert not has_lora(backend.unet) and not hasattr(backend.unet, "peft_config")
    assert state.keys() == before[0].keys()
    assert all(torch.equal(state[k], before[0][k]) for k in state)
    assert torch.equal(out, before[1])


def test_model_is_unchanged_after_a_run(backend: DiffusersBackend) -> None:
    before = _snapshot(backend)
    erase(backend, make_config("esd", erase=["cat"], **QUICK))
    _assert_untouched(backend, before)


def test_progress_reports_every_step_with_loss_concept_and_found(sd1_backend: DiffusersBackend) -> None:
    seen: list[tuple[int, int, dict]] = []
    callbacks = Callbacks(on_step=lambda s, n, info: seen.append((s, n, info)), preview_every=2)
    erase(sd1_backend, make_config("eap", erase=["cat"], k_closest=8, num_centers=4, **QUICK), callbacks)
    training = [(s, n, i) for s, n, i in seen if INFO_LOSS in i]
    assert [s for s, _, _ in training] == [1, 2, 3, 4] and all(n == 4 for _, n, _ in training)
    assert all(i[INFO_CONCEPT] == "cat" and isinstance(i[INFO_FOUND], str) for _, _, i in training)
    assert [INFO_PREVIEW in i for _, _, i in training] == [False, True, False, True]
    assert training[1][2][INFO_PREVIEW].shape == sd1_backend.latent_shape()


def test_cancel_stops_and_restores_the_model(sd1_backend: DiffusersBackend) -> None:
    before = _snapshot(sd1_backend)
    steps: list[int] = []
    callbacks = Callbacks(on_step=lambda step, total, info: steps.append(step), should_stop=lambda: 2 in steps)
    with pytest.raises(Cancelled, match="training at step 2 of 4"):
        erase(sd1_backend, make_config("esd", erase=["cat"], **QUICK), callbacks)
    _assert_untouched(sd1_backend, before)


def test_nan_loss_raises_before_the_weights_change(
    sd1_backend: DiffusersBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = _snapshot(sd1_backend)
    predict = sd1_backend.predict_noise

    def nan_when_training(x, t, cond):
        out = predict(x, t, cond)
        return out * float("nan") if torch.is_grad_enabled() else out

    monkeypatch.setattr(sd1_backend, "predict_noise", nan_when_training)
    with pytest.raises(NumericalError, match="loss became nan.*Lower the learning rate"):
        erase(sd1_backend, make_config("esd", erase=["cat"], **QUICK))
    monkeypatch.undo()
    _assert_untouched(sd1_backend, before)


def test_out_of_memory_becomes_a_resource_error_with_advice(
    sd1_backend: DiffusersBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = _snapshot(sd1_backend)

    def oom(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(sd1_backend, "predict_noise", oom)
    with pytest.raises(ResourceError, match="Out of memory.*lower resolution"):
        erase(sd1_backend, make_config("esd", erase=["cat"], **QUICK))
    monkeypatch.undo()
    _assert_untouched(sd1_backend, before)


def test_a_model_still_carrying_our_lora_is_refused(sd1_backend: DiffusersBackend) -> None:
    inject_lora(sd1_backend.unet, ["down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k"], 2, 2.0)
    with pytest.raises(ModelError, match="already carries"):
        erase(sd1_backend, make_config("esd", erase=["cat"], **QUICK))


def test_same_seed_gives_the_same_lora(tmp_path: Path) -> None:
    runs = [
        erase(
            make_backend("sd1", tmp_path / str(i)),
            make_config("eap", erase=["cat"], k_closest=8, num_centers=4, **QUICK),
        )
        for i in range(2)
    ]
    for name, w in runs[0].weights.items():
        assert torch.equal(w.up, runs[1].weights[name].up)


def test_resume_continues_from_the_saved_lora(sd1_backend: DiffusersBackend, tmp_path: Path) -> None:
    first = erase(sd1_backend, make_config("esd", erase=["cat"], lr=1e-2, **QUICK))
    path = export_lora(first, tmp_path / "first.safetensors", dtype=torch.float32)
    # lr 0: the resumed run must hand back exactly the loaded weights
    same = erase(sd1_backend, make_config("esd", erase=["cat"], lr=0.0, **QUICK), resume=load_lora(path))
    for name, w in first.weights.items():
        torch.testing.assert_close(same.weights[name].up, w.up)
        torch.testing.assert_close(same.weights[name].down, w.down)
    # lr > 0: training goes on from there (fixed steps: with the stopping rule a LoRA that holds trains no step)
    fixed = {**QUICK, "until_erased": False}
    more = erase(sd1_backend, make_config("esd", erase=["cat"], lr=1e-2, **fixed), resume=load_lora(path))
    assert any(not torch.allclose(more.weights[n].up, w.up) for n, w in first.weights.items())
    assert more.resumed_from == "first"
    assert load_lora(export_lora(more, tmp_path / "more.safetensors")).info()["steps"] == 2 * QUICK["steps"]


def _adam_steps(result) -> set[int]:
    return {int(v.item()) for k, v in result.training_state.items() if k.endswith("/step")}


def test_resume_continues_adams_state_saved_beside_the_lora(sd1_backend: DiffusersBackend, tmp_path: Path) -> None:
    config = make_config("esd", erase=["cat"], lr=1e-2, **{**QUICK, "until_erased": False})
    first = erase(sd1_backend, config)
    path = export_lora(first, tmp_path / "first.safetensors")
    state_file = save_state(first.training_state, path)
    assert state_file.name == "first.erasure-state" and _adam_steps(first) == {4}
    assert state_file.stat().st_mode & 0o777 == path.stat().st_mode & 0o777  # the user's usual permissions

    more = erase(sd1_backend, config, resume=load_lora(path), resume_state=load_state(path))
    assert _adam_steps(more) == {8}, "the resumed Adam did not continue from the saved moments"
    assert more.resumed_optimizer.startswith("optimizer state restored") and more.report()["previous_steps"] == 4

    fresh = erase(sd1_backend, config, resume=load_lora(path))
    assert _adam_steps(fresh) == {4} and fresh.resumed_optimizer.startswith("fresh")
    # A state file left from another version of the LoRA is not used.
    export_lora(more, path, dtype=torch.float32)
    stale = erase(sd1_backend, config, resume=load_lora(path), resume_state=load_state(path))
    assert _adam_steps(stale) == {4} and "another version" in stale.resumed_optimizer


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"method": "age"}, "method ESD"),
        ({"erase": ["dog"]}, "erased concepts"),
        ({"layers": "xattn-kv"}, "layers"),
        ({"rank": 2}, "rank"),
    ],
)
def test_resume_refuses_a_lora_made_for_another_erasure(
    sd1_backend: DiffusersBackend, tmp_path: Path, change: dict, named: str
) -> None:
    path = export_lora(erase(sd1_backend, make_config("esd", erase=["cat"], **QUICK)), tmp_path / "e.safetensors")
    settings = {"erase": ["cat"], **QUICK, **{k: v for k, v in change.items() if k != "method"}}
    config = make_config(change.get("method", "esd"), **settings)
    with pytest.raises(ConfigError, match=f"cannot be resumed.*{named}.*this run"):
        erase(sd1_backend, config, resume=load_lora(path))
    assert not has_lora(sd1_backend.unet)


def test_resume_refuses_a_lora_this_extension_did_not_make(sd1_backend: DiffusersBackend, tmp_path: Path) -> None:
    result = erase(sd1_backend, make_config("esd", erase=["cat"], **QUICK))
    path = save_lora_file(result.kohya_state_dict(), tmp_path / "other.safetensors", {})
    with pytest.raises(ConfigError, match="no erasure metadata"):
        erase(sd1_backend, make_config("esd", erase=["cat"], **QUICK), resume=load_lora(path))


def test_resume_with_a_lora_for_another_architecture_raises(tmp_path: Path) -> None:
    sdxl = make_backend("sdxl", tmp_path / "xl")
    path = export_lora(erase(sdxl, make_config("esd", erase=["cat"], **QUICK)), tmp_path / "xl.safetensors")
    sd1 = make_backend("sd1", tmp_path / "sd1")
    with pytest.raises(ModelError, match="made for sdxl"):
        erase(sd1, make_config("esd", erase=["cat"], **QUICK), resume=load_lora(path))
    assert not has_lora(sd1.unet)


def test_uce_cannot_resume(sd1_backend: DiffusersBackend, tmp_path: Path) -> None:
    path = export_lora(
        erase(sd1_backend, make_config("uce", erase=["cat"], audit_samples=0)), tmp_path / "u.safetensors"
    )
    with pytest.raises(ConfigError, match="nothing to resume"):
        erase(sd1_backend, make_config("uce", erase=["cat"]), resume=load_lora(path))


def test_report_counts_unet_evaluations_and_time(sd1_backend: DiffusersBackend) -> None:
    result = erase(sd1_backend, make_config("esd", erase=["cat"], **QUICK))
    report = result.report()
    # each step: at least 2 frozen + 1 trained forward and 1 backward; sampling adds 2 per DDIM step
    assert report["unet_evals"] >= 4 * 4 and report["seconds"] > 0 and report["peak_memory_mb"] > 0
    assert len(report["losses"]) == 4 and report["settings"]["method"] == "esd"


def test_reference_timestep_offset_option_runs(sd1_backend: DiffusersBackend) -> None:
    result = erase(
        sd1_backend,
        make_config(
            "age",
            erase=["cat"],
            reference_timestep_offset=True,
            detached_erasure_term=True,
            k_closest=6,
            num_centers=3,
            **QUICK,
        ),
    )
    assert len(result.losses) == 4 and all(torch.isfinite(torch.tensor(result.losses)))


def test_the_hosts_global_random_state_is_left_alone(sd1_backend: DiffusersBackend) -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    erase(sd1_backend, make_config("esd", erase=["cat"], **QUICK))
    assert torch.equal(torch.rand(3), expected)


def test_non_finite_uce_edit_raises(sd1_backend: DiffusersBackend) -> None:
    with torch.no_grad():
        sd1_backend.unet.down_blocks[0].attentions[0].transformer_blocks[0].attn2.to_k.weight[0, 0] = float("inf")
    with pytest.raises(NumericalError, match="UCE edit"):
        erase(sd1_backend, make_config("uce", erase=["cat"]))
    assert not has_lora(sd1_backend.unet)


def test_a_nan_loss_is_caught_before_the_optimiser_step_changes_the_lora(
    sd1_backend: DiffusersBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The LoRA weights read at the moment the error is raised are those the last good step left."""
    import erasure_core.context as context

    def lora_weights() -> dict[str, torch.Tensor]:
        return {n: p.detach().clone() for n, p in sd1_backend.unet.named_parameters() if "lora_" in n}

    after_step: dict[int, dict[str, torch.Tensor]] = {}
    at_error: list[dict[str, torch.Tensor]] = []

    class RecordingError(NumericalError):
        def __init__(self, message: str) -> None:
            at_error.append(lora_weights())
            super().__init__(message)

    monkeypatch.setattr(context, "NumericalError", RecordingError)
    predict = sd1_backend.predict_noise

    def nan_from_the_third_step(x, t, cond):
        out = predict(x, t, cond)
        return out * float("nan") if torch.is_grad_enabled() and len(after_step) >= 2 else out

    monkeypatch.setattr(sd1_backend, "predict_noise", nan_from_the_third_step)
    callbacks = Callbacks(on_step=lambda s, n, info: after_step.setdefault(s, lora_weights()) if s else None)
    with pytest.raises(NumericalError, match="before the weights were changed"):
        erase(sd1_backend, make_config("esd", erase=["cat"], **{**QUICK, "until_erased": False}), callbacks)
    assert sorted(after_step) == [1, 2] and len(at_error) == 1
    assert any(not torch.equal(after_step[1][n], after_step[2][n]) for n in after_step[2])  # training did move
    for name, value in at_error[0].items():
        assert torch.isfinite(value).all() and torch.equal(value, after_step[2][name]), name
