"""An erasure job as the tab and the HTTP route run it, on a fake WebUI: what it checks, writes, shows and refuses."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest
import torch

from a1111.jobs import Busy, exclusive_run, parse_form, parse_request, run_job
from erasure_core import Cancelled, ConfigError, ModelError, ResourceError
from erasure_core.defaults import DEFAULTS
from erasure_core.lora.adapter import has_lora
from erasure_core.lora.export import load_lora

from .conftest import FakeWebUI
from .fakes import FakeA1111Model, FakeForgeModel

FAST = {"resolution": 64, "ddim_steps": 4, "audit_samples": 1, "audit_ddim_steps": 4, "lr": 5e-3}


def request(**fields):
    return parse_request({"erase": ["cat"], "method": "esd", "steps": 2, "settings": FAST, **fields})


def host():
    from a1111.host import WebUIHost

    return WebUIHost()


# -- checking the request ---------------------------------------------------------------------------------------
def test_only_the_concepts_are_required_and_the_rest_are_the_methods_defaults() -> None:
    for method in ("eap", "age", "esd"):
        config = parse_request({"erase": ["cat"], "method": method}).config
        assert (config.steps, config.lr, config.seed) == tuple(DEFAULTS[method][k] for k in ("steps", "lr", "seed"))
    assert parse_request({"erase": ["cat"]}).config.method == "eap"


def test_concepts_arrive_as_lists_or_lines_with_weights_and_presets_add_to_them() -> None:
    config = parse_request({"erase": "Monet: 1.5\n(cat:2)", "keep": ["dog"], "preset": "famous painters"}).config
    assert config.erase == ("Van Gogh", "Monet", "cat") and config.erase_weights == (1.0, 1.5, 2.0)
    assert config.keep[-1] == "dog" and "Rembrandt" in config.keep


@pytest.mark.parametrize(
    ("data", "says"),
    [
        ({}, "'erase' is missing"),
        ({"erase": []}, "empty"),
        ({"erase": ["cat"], "keep": ["Cat"]}, "both erased and kept"),
        ({"erase": ["cat"], "step": 3}, r"Unknown field\(s\) \['step'\]"),
        ({"erase": ["cat"], "steps": "3"}, "'steps' is '3'"),
        ({"erase": ["cat"], "steps": True}, "'steps' is True"),
        ({"erase": ["cat"], "steps": 0}, "steps is 0"),
        ({"erase": ["cat"], "method": "magic"}, "'method' is 'magic'"),
        ({"erase": ["cat"], "layers": "some"}, "'layers' is 'some'"),
        ({"erase": ["cat"], "name": "../outside"}, "would leave the loras folder"),
        ({"erase": ["cat"], "name": "/etc/passwd"}, "absolute path"),
        ({"erase": ["cat"], "settings": {"negative_guidance": "strong"}}, "give a number"),
        ({"erase": ["cat"], "settings": {"keep": ["x"]}}, "cannot be set"),
        ({"erase": ["cat"], "settings": {"gumbel_lr": 0.1}, "method": "esd"}, "Unknown setting"),
        ({"erase": ["cat"], "preview_steps": 0}, "'preview_steps' is 0"),
        ({"erase": ["cat"], "preset": "nope"}, "Unknown preset"),
        ({"erase": [3]}, "as strings"),
        (["cat"], "JSON object"),
    ],
)
def test_bad_requests_say_what_to_fix(data, says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        parse_request(data)


def test_the_tab_form_turns_gradio_numbers_into_a_request() -> None:
    values = {"erase": "cat", "keep": "", "method": "esd", "layers": "method default", "steps": 3.0, "lr": 0.01}
    values |= {"rank": 8.0, "seed": 2.0, "name": "", "overwrite": False, "preview": True, "preview_size": 0}
    values |= {"preset": "famous painters", "settings": "negative_guidance = 2"}
    r = parse_form(values)
    assert (r.config.steps, r.config.rank, r.config.seed, r.config.negative_guidance) == (3, 8, 2, 2.0)
    assert r.preview and r.preview_size is None and r.config.keep == ()  # the preset was copied into the boxes
    uce = parse_form(values | {"method": "uce", "steps": None, "lr": None})
    assert uce.config.method == "uce"


# -- running it -------------------------------------------------------------------------------------------------
def test_a_job_writes_a_lora_and_its_card_where_the_webui_lists_them(webui: FakeWebUI) -> None:
    old = os.umask(0o022)
    try:
        job = run_job(request(name="no-cat", keep=["dog"]), host())
    finally:
        os.umask(old)
    path = webui.lora_dir / "no-cat.safetensors"
    assert job.path == path and job.name == "no-cat" and job.prompt_tag == "<lora:no-cat:1>"
    lora = load_lora(path)
    assert lora.metadata["ss_output_name"] == "no-cat" and lora.info()["erased"] == ["cat"]
    card = json.loads(path.with_suffix(".json").read_text())
    assert card["sd version"] == "SD1" and "Erases cat; keeps dog (ESD, 2 steps" in card["description"]
    assert (path.stat().st_mode & 0o777) == 0o644 == (path.with_suffix(".json").stat().st_mode & 0o777)
    assert webui.networks.listed == 1 and webui.gc_calls  # listed at once; memory released
    assert not list(webui.lora_dir.glob("*.partial")) and not list(webui.lora_dir.glob(".*"))
    answer = job.to_dict()
    assert answer["prompt"] == "<lora:no-cat:1>" and answer["audit"]["rows"][0]["role"] == "erased"


def test_progress_reaches_the_webuis_bar_and_live_preview(webui: FakeWebUI) -> None:
    run_job(request(steps=3), host())
    steps = [(step, total) for step, total, text in webui.state.history if text and text.startswith("Erasing")]
    assert steps == [(1, 3), (2, 3), (3, 3)]
    assert any("cat" in text and "loss" in text for _, _, text in webui.state.history if text)
    assert webui.state.images >= 1 and webui.state.current_image.size == (480, 220)  # the loss curve


def test_default_names_are_numbered_and_named_files_are_never_overwritten_unasked(webui: FakeWebUI) -> None:
    first, second = run_job(request(), host()), run_job(request(), host())
    assert (first.name, second.name) == ("erased-cat", "erased-cat_2")
    before = first.path.read_bytes()
    with pytest.raises(ConfigError, match="already exists"):
        run_job(request(name="erased-cat", steps=1), host())
    assert first.path.read_bytes() == before
    replaced = run_job(request(name="erased-cat", steps=1, overwrite=True), host())
    assert replaced.path == first.path and load_lora(first.path).info()["steps"] == 1


def test_a_name_another_lora_has_in_a_subfolder_is_refused(webui: FakeWebUI) -> None:
    (webui.lora_dir / "styles").mkdir(parents=True)
    (webui.lora_dir / "styles" / "no-cat.safetensors").write_bytes(b"x")
    with pytest.raises(ConfigError, match="ambiguous"):
        run_job(request(name="no-cat"), host())
    assert run_job(request(), host()).name == "erased-cat"


def test_the_preview_draws_every_row_without_and_with_the_new_lora(webui: FakeWebUI) -> None:
    job = run_job(request(keep=["dog"], preview=True, preview_size=64, preview_steps=2), host())
    assert [role for role, _ in job.grid_rows] == ["erased", "kept"]
    before, after = webui.drawn
    assert before == ["cat", "dog"] and after == ["cat <lora:erased-cat:1>", "dog <lora:erased-cat:1>"]
    assert job.grid.size[1] > 2 * 64 and job.preview_error is None and "preview_s" in job.timings


def test_an_interrupted_run_writes_nothing_and_hands_the_model_back(webui: FakeWebUI) -> None:
    unet = webui.shared.sd_model.model.diffusion_model
    before = {k: v.clone() for k, v in unet.state_dict().items()}
    webui.state.interrupt_at = 1
    with pytest.raises(Cancelled, match="training at step 1 of 5"):
        run_job(request(steps=5, name="no-cat"), host())
    assert not webui.lora_dir.exists() or not list(webui.lora_dir.iterdir())
    assert all(v.equal(before[k]) for k, v in unet.state_dict().items()) and webui.gc_calls


def test_interrupt_after_the_last_step_stops_the_audit_too(webui: FakeWebUI) -> None:
    """Interrupt is heard in every phase, not only between steps: pressed at the last step, the audit stops."""
    unet = webui.shared.sd_model.model.diffusion_model
    before = {k: v.clone() for k, v in unet.state_dict().items()}
    webui.state.interrupt_at = 3
    settings = {**FAST, "until_erased": False, "audit_samples": 2}
    with pytest.raises(Cancelled, match="during the audit"):
        run_job(request(steps=3, name="no-cat", settings=settings), host())
    assert not webui.lora_dir.exists() or not list(webui.lora_dir.iterdir())
    assert all(v.equal(before[k]) for k, v in unet.state_dict().items())


def test_no_loaded_model_is_a_clear_error(webui: FakeWebUI) -> None:
    webui.load(None)
    with pytest.raises(ModelError, match="No model is loaded"):
        run_job(request(), host())


def test_forge_jobs_load_the_chosen_checkpoint_and_run_on_forges_objects(forge: FakeWebUI) -> None:
    job = run_job(request(name="no-cat-forge"), host())
    sd_model = forge.shared.sd_model
    assert forge.reloads and isinstance(sd_model, FakeForgeModel)
    assert sd_model.loaded == [sd_model.forge_objects_original.unet] and job.path.is_file()
    assert forge.networks.loaded_networks == []  # Forge's LoRAs live on patcher clones; A1111's list is not touched


def test_a_second_erasure_is_refused_while_one_runs() -> None:
    inside, release = threading.Event(), threading.Event()

    def first() -> None:
        with exclusive_run():
            inside.set()
            release.wait(10)

    worker = threading.Thread(target=first)
    worker.start()
    try:
        assert inside.wait(10)
        with pytest.raises(Busy, match="Another concept erasure is running"), exclusive_run():
            pass
    finally:
        release.set()
        worker.join()
    with exclusive_run():  # free again
        pass


def test_card_and_lora_are_written_together_or_not_at_all(webui: FakeWebUI, monkeypatch) -> None:
    import a1111.jobs

    def fail(*_):
        raise OSError("disk full")

    monkeypatch.setattr(a1111.jobs, "write_card", fail)
    with pytest.raises(OSError, match="disk full"):
        run_job(request(name="no-cat"), host())
    assert not (Path(webui.lora_dir) / "no-cat.safetensors").exists()


def test_out_of_memory_says_what_to_do_writes_nothing_and_hands_the_model_back(webui: FakeWebUI, monkeypatch) -> None:
    sd_model = webui.shared.sd_model
    before = {k: v.clone() for k, v in sd_model.model.diffusion_model.state_dict().items()}
    calls = []

    def apply_model(x, t, cond):
        calls.append(1)
        if len(calls) > 3:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return FakeA1111Model.apply_model(sd_model, x, t, cond)

    monkeypatch.setattr(sd_model, "apply_model", apply_model)
    with pytest.raises(ResourceError, match="Out of memory .* Free memory"):
        run_job(request(name="no-cat"), host())
    assert not (webui.lora_dir / "no-cat.safetensors").exists() and webui.gc_calls
    unet = sd_model.model.diffusion_model
    assert not has_lora(unet) and all(v.equal(before[k]) for k, v in unet.state_dict().items())
