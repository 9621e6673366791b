"""The ComfyUI adapter and nodes against a fake ComfyUI (`fake_comfy`), so CI runs the host code without the host.

What is checked is what a ComfyUI user relies on: the user's MODEL is never changed, the MODEL handed back carries
the LoRA the way LoraLoader would add it, the file saved and loaded back reproduces it, Cancel stops every node
that runs long, and each node's declared inputs are the ones its code takes.
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest
import torch

from erasure_core.frontend import PROGRESS_EVENT
from erasure_core.frontend.concepts import ConceptList
from erasure_core.lora.export import read_safetensors
from tests.pack import PACK_NAME, load_pack

from . import fake_comfy
from .fake_comfy import BaseModel, Clip, ModelPatcher, Vae, run_node

FAST = "ddim_steps = 4\nresolution = 64\naudit_samples = 1\naudit_ddim_steps = 2\nuntil_erased = false"
HOST_MODULES = ("comfy_backend", "runtime", "training", "erase_nodes", "lora_nodes", "review_nodes", "extension")


@pytest.fixture
def comfy(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[SimpleNamespace]:
    """The fake host installed, and the pack's host modules imported afresh against it."""
    host = fake_comfy.install(monkeypatch, tmp_path)
    pack = load_pack()
    nodes = importlib.import_module(f"{PACK_NAME}.nodes")
    for name in HOST_MODULES:
        monkeypatch.delitem(sys.modules, f"{PACK_NAME}.nodes.{name}", raising=False)
        monkeypatch.delattr(nodes, name, raising=False)
    host.pack = pack
    host.errors = importlib.import_module(f"{PACK_NAME}.erasure_core.errors")  # the pack's own classes
    host.module = lambda name: importlib.import_module(f"{PACK_NAME}.nodes.{name}")
    yield host


def comfy_model(arch: str = "sd1", seed: int = 0) -> ModelPatcher:
    """A MODEL whose weights were built in inference mode, as ComfyUI loads checkpoints."""
    torch.manual_seed(seed)
    with torch.inference_mode():
        base = BaseModel(arch)
    return ModelPatcher(base)


def weights(model: ModelPatcher) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.model.state_dict().items()}


def prediction(model: ModelPatcher, clip: Clip, prompt: str) -> torch.Tensor:
    """The patched MODEL's noise prediction for `prompt` on fixed latents, mid-schedule."""
    context, pooled = clip.encode_from_tokens(clip.tokenize(prompt), return_pooled=True)
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    with model.patched() as base, torch.no_grad():
        sigma = base.model_sampling.sigmas[[500, 500]]
        y = None
        if pooled is not None:
            y = base.encode_adm(pooled.repeat(2, 1), 64, 64, 64, 64)
        x = x * (1 + sigma[0] ** 2).sqrt()
        return (x - base.apply_model(x, sigma, c_crossattn=context.repeat(2, 1, 1), y=y)) / sigma[0]


def erase_inputs(model: ModelPatcher, clip: Clip, method: str = "esd", steps: int = 12, **extra) -> dict:
    inputs = dict(
        model=model,
        clip=clip,
        erase="cat",
        keep="car",
        method=method,
        layers="method default",
        steps=steps,
        learning_rate=1e-2,
        rank=4,
        seed=0,
        advanced=FAST,
    )
    return inputs | extra


def nodes_of(comfy: SimpleNamespace) -> list[type]:
    import asyncio

    return asyncio.run(comfy.module("extension").ConceptErasureExtension().get_node_list())


# -- contracts ------------------------------------------------------------------------------------------------
def test_every_declared_input_is_what_execute_takes(comfy):
    for node in nodes_of(comfy):
        schema = node.define_schema()
        params = {k: p for k, p in inspect.signature(node.execute).parameters.items() if k != "cls"}
        declared = {i.id: i for i in schema.inputs}
        assert set(declared) == set(params), node.__name__
        for name, spec in declared.items():
            has_default = params[name].default is not inspect.Parameter.empty
            assert spec.optional == has_default, f"{node.__name__}.{name}: optional must match a default"
    assert len({n.define_schema().node_id for n in nodes_of(comfy)}) == 7


def test_erase_concept_needs_the_clip(comfy):
    node = comfy.module("erase_nodes").EraseConceptNode
    with pytest.raises(AssertionError, match="clip"):
        run_node(node, **{k: v for k, v in erase_inputs(comfy_model(), Clip("sd1")).items() if k != "clip"})
    with pytest.raises(comfy.errors.ModelError, match="No CLIP is connected"):
        run_node(node, **erase_inputs(comfy_model(), None))


# -- Erase Concept --------------------------------------------------------------------------------------------
def test_erase_concept_returns_a_patched_clone_and_leaves_the_users_model_alone(comfy):
    model, clip = comfy_model(), Clip("sd1")
    before = weights(model)
    original = {p: prediction(model, clip, p) for p in ("cat", "car")}
    out = run_node(comfy.module("erase_nodes").EraseConceptNode, **erase_inputs(model, clip))
    erased, lora, losses, audit = out.values

    assert not model.patches and all(torch.equal(before[k], v) for k, v in weights(model).items())
    assert not erased.not_loaded and len(erased.patches) == len({k.split(".")[0] for k in lora})
    moved = {p: (prediction(erased, clip, p) - original[p]).norm() / original[p].norm() for p in original}
    assert moved["cat"] > 0.05 and moved["car"] < 0.4 * moved["cat"]
    assert len(losses["loss"]) == 12 and "cat" in audit

    bar = fake_comfy.ProgressBar.bars[-1]
    assert bar.node_id == "7" and bar.values[-1] == bar.total == 12
    events = [data for name, data in comfy.server.events if name == PROGRESS_EVENT]
    assert [e["step"] for e in events if e["phase"] == "train"][-1] == 12
    assert all(e["node"] == "7" and e["method"] == "esd" for e in events)


def test_a_second_run_with_the_same_settings_comes_from_the_cache(comfy):
    model, clip = comfy_model(), Clip("sd1")
    node = comfy.module("erase_nodes").EraseConceptNode
    first = run_node(node, **erase_inputs(model, clip))
    calls = model.model.calls
    second = run_node(node, **erase_inputs(model, clip))
    assert model.model.calls == calls  # no UNet evaluation: nothing trained again
    assert second.values[3].startswith("(from the cache")
    assert all(torch.equal(first.values[1][k], second.values[1][k]) for k in first.values[1])
    assert second.values[2]["loss"] == pytest.approx(first.values[2]["loss"], rel=1e-3)  # from the file's metadata


def test_eap_keeps_its_vocabulary_distances_in_comfyuis_user_folder(comfy, monkeypatch):
    monkeypatch.delenv("ERASURE_CACHE_DIR")
    run_node(comfy.module("erase_nodes").EraseConceptNode, **erase_inputs(comfy_model(), Clip("sd1"), "eap", 4))
    assert list((comfy.user / "concept_erasure" / "vocabulary-distances").glob("*.safetensors"))


@pytest.mark.parametrize("polls", [0, 5, 40])
def test_cancel_raises_comfyuis_interrupt_and_changes_nothing(comfy, polls):
    model, clip = comfy_model(), Clip("sd1")
    before, modules = weights(model), [n for n, _ in model.model.named_modules()]
    comfy.mm.interrupt_after = polls
    with pytest.raises(fake_comfy.InterruptProcessingException):
        run_node(comfy.module("erase_nodes").EraseConceptNode, **erase_inputs(model, clip, "eap", 30))
    assert all(torch.equal(before[k], v) for k, v in weights(model).items())
    assert [n for n, _ in model.model.named_modules()] == modules  # no LoRA layer left behind
    assert not list((comfy.user / "concept_erasure").rglob("*.safetensors"))
    assert comfy.mm.emptied == 1


def test_uce_says_which_widgets_it_ignored(comfy):
    out = run_node(comfy.module("erase_nodes").EraseConceptNode, **erase_inputs(comfy_model(), Clip("sd1"), "uce"))
    assert "steps, learning_rate and rank do not apply" in out.values[3]


# -- SDXL -----------------------------------------------------------------------------------------------------
def test_sdxl_encodes_both_text_encoders_and_pools_from_clip_g(comfy):
    clip = Clip("sdxl")
    backend = comfy.module("comfy_backend").ComfyBackend(comfy_model("sdxl"), clip)
    backend.load()
    conds = backend.encode_prompts(["cat", "", "a dog"])
    for i, prompt in enumerate(["cat", "", "a dog"]):
        context, pooled = clip.encode_from_tokens(clip.tokenize(prompt), return_pooled=True)
        torch.testing.assert_close(conds.context[i], context[0])  # CLIPTextEncode's encoding, batched
        torch.testing.assert_close(conds.pooled[i], pooled[0])
    assert conds.pooled[1].abs().sum() > 0  # "" is really encoded (UCE's guide), not zeros
    assert conds.lengths.tolist() == [3, 2, 4]


def test_sdxl_erasure_moves_the_erased_prompt(comfy):
    model, clip = comfy_model("sdxl"), Clip("sdxl")
    original = prediction(model, clip, "cat")
    erased = run_node(comfy.module("erase_nodes").EraseConceptNode, **erase_inputs(model, clip)).values[0]
    assert not erased.not_loaded
    assert (prediction(erased, clip, "cat") - original).norm() > 0.02 * original.norm()


# -- Save / Load ----------------------------------------------------------------------------------------------
def test_saved_lora_loads_back_and_reproduces_the_erased_model(comfy):
    model, clip = comfy_model(), Clip("sd1")
    erased, lora, _, _ = run_node(comfy.module("erase_nodes").EraseConceptNode, **erase_inputs(model, clip)).values
    nodes = comfy.module("lora_nodes")
    name = run_node(nodes.SaveErasureLoraNode, lora=lora, name="erased/cat", if_exists="add number").values[0]
    assert name == "erased/cat.safetensors"
    _, metadata = read_safetensors(comfy.loras / name)
    assert metadata["ss_output_name"] == "cat"
    again = run_node(nodes.SaveErasureLoraNode, lora=lora, name="erased/cat", if_exists="add number").values[0]
    assert again != name and (comfy.loras / again).is_file()
    with pytest.raises(Exception, match="exists"):
        run_node(nodes.SaveErasureLoraNode, lora=lora, name="erased/cat", if_exists="fail")

    loaded, _, info = run_node(
        nodes.LoadErasureLoraNode, model=model, lora_file=name, strength=1.0, check=False
    ).values
    assert "cat" in info and not loaded.not_loaded
    in_memory, from_file = prediction(erased, clip, "cat"), prediction(loaded, clip, "cat")
    assert (from_file - in_memory).norm() < 0.01 * (in_memory - prediction(model, clip, "cat")).norm()
    half = run_node(nodes.LoadErasureLoraNode, model=model, lora_file=name, strength=0.5, check=False).values[0]
    key = next(iter(half.patches))
    torch.testing.assert_close(half.patches[key][0], 0.5 * loaded.patches[key][0])
    with pytest.raises(comfy.errors.ModelError, match="not found"):
        run_node(nodes.LoadErasureLoraNode, model=model, lora_file="missing.safetensors", strength=1.0, check=False)


def test_load_with_check_says_whether_the_erasure_held_on_this_model(comfy):
    model, clip = comfy_model(), Clip("sd1")
    lora = run_node(comfy.module("erase_nodes").EraseConceptNode, **erase_inputs(model, clip)).values[1]
    nodes = comfy.module("lora_nodes")
    name = run_node(nodes.SaveErasureLoraNode, lora=lora, name="cat", if_exists="fail").values[0]
    load = nodes.LoadErasureLoraNode

    def info(strength: float, **extra) -> str:
        return run_node(load, model=model, lora_file=name, strength=strength, **extra).values[2]

    off = info(0.0, check=True, clip=clip)  # applied at strength 0 the LoRA erases nothing here
    assert "did not hold on this model for cat: cat 0.00" in off and "--resume" in off
    on = info(1.0, check=True, clip=clip)
    # on the model it was made on, the check measures what the LoRA's own final audit measured: it holds
    score, made_on = map(float, re.search(r"cat (\d\.\d\d) \(made-on model: (\d\.\d\d)\)", on).groups())
    assert score > 0.1 and abs(score - made_on) <= 0.02 and "The erasure held" in on
    assert "hold" not in info(1.0, check=False)
    with pytest.raises(comfy.errors.ModelError, match="connect the model's CLIP"):
        info(1.0, check=True)


def test_a_lora_is_topped_up_on_a_fine_tune_of_its_model(comfy):
    """Erase on the base, then continue from that LoRA on a 'fine-tune' (the base with perturbed weights)."""
    base, clip = comfy_model(), Clip("sd1")
    node = comfy.module("erase_nodes").EraseConceptNode
    lora = run_node(node, **erase_inputs(base, clip, steps=6)).values[1]
    tuned = comfy_model()
    with torch.inference_mode(), torch.no_grad():
        for p in tuned.model.parameters():
            p.add_(0.05 * p.std() * torch.randn_like(p))
    before = weights(tuned)
    topped = run_node(node, **erase_inputs(tuned, clip, steps=6), resume=lora).values
    assert "steps: 12" in topped[3] and "resumed from:" in topped[3]  # 6 on the base, 6 more here
    assert all(torch.equal(before[k], v) for k, v in weights(tuned).items())
    fresh = run_node(node, **erase_inputs(tuned, clip, steps=6)).values[1]
    assert any(not torch.equal(topped[1][k], fresh[k]) for k in fresh)  # it did start from the connected LoRA
    with pytest.raises(comfy.errors.ConfigError, match="method"):
        run_node(node, **erase_inputs(tuned, clip, "eap", steps=2), resume=lora)


def test_save_refuses_a_lora_that_is_not_a_kohya_unet_lora(comfy):
    nodes = comfy.module("lora_nodes")
    with pytest.raises(comfy.errors.ModelError, match="lora_unet_"):
        run_node(nodes.SaveErasureLoraNode, lora={"te.weight": torch.zeros(1)}, name="x", if_exists="fail")
    assert not list(comfy.loras.rglob("*"))


# -- Audit and Preview ----------------------------------------------------------------------------------------
@pytest.fixture
def erased_sd1(comfy) -> SimpleNamespace:
    model, clip = comfy_model(), Clip("sd1")
    erased, lora, _, _ = run_node(comfy.module("erase_nodes").EraseConceptNode, **erase_inputs(model, clip)).values
    return SimpleNamespace(model=model, clip=clip, erased=erased, lora=lora)


def test_audit_node_reports_the_erased_concept_and_stops_on_cancel(comfy, erased_sd1):
    audit = comfy.module("review_nodes").ErasureAuditNode
    inputs = dict(model=erased_sd1.model, clip=erased_sd1.clip, lora=erased_sd1.lora, samples=1, seed=0)
    text, chart = run_node(audit, **inputs, extra_prompts="dog\nboat").values
    rows = {line.split()[0] for line in text.splitlines()[1:] if line.strip()}
    assert {"cat", "dog", "boat"} <= rows
    assert chart.ndim == 4 and chart.shape[-1] == 3
    comfy.mm.polls, comfy.mm.interrupt_after = 0, 2
    with pytest.raises(fake_comfy.InterruptProcessingException):
        run_node(audit, **inputs)


def test_attack_audit_node_reports_success_rates_and_stops_on_cancel(comfy, erased_sd1, monkeypatch):
    node = comfy.module("review_nodes").ErasureAttackAuditNode
    engine = sys.modules[comfy.errors.__name__.rpartition(".")[0] + ".attack"]
    monkeypatch.setattr(
        engine, "UNKNOWN_SHARE", 10.0
    )  # a random tiny model draws nothing; the rule is tested on the demo
    inputs = dict(
        model=erased_sd1.model,
        clip=erased_sd1.clip,
        lora=erased_sd1.lora,  # the concept comes from its metadata
        budget_seconds=20,  # two trials of this slow stub model fit its sampling share
        sweep=True,
        discrete=False,
        soft=True,
        seed=0,
    )
    weights = {k: v.clone() for k, v in erased_sd1.model.model.state_dict().items()}
    (text,) = run_node(node, **inputs).values
    assert "'cat'" in text and "sweep" in text and "soft" in text and "discrete" not in text
    assert "not a proof" in text
    assert all(torch.equal(v, erased_sd1.model.model.state_dict()[k]) for k, v in weights.items())
    comfy.mm.polls, comfy.mm.interrupt_after = 0, 2
    with pytest.raises(fake_comfy.InterruptProcessingException):
        run_node(node, **inputs)
    with pytest.raises(comfy.errors.ConfigError, match="more than 0 seconds|at least one attack|Choose at least"):
        run_node(node, **inputs | {"sweep": False, "soft": False})


def test_preview_draws_both_models_per_prompt_and_stops_on_cancel(comfy, erased_sd1):
    preview = comfy.module("review_nodes").BeforeAfterPreviewNode
    inputs = dict(
        original=erased_sd1.model,
        erased=erased_sd1.erased,
        clip=erased_sd1.clip,
        vae=Vae(),
        prompts="",
        negative="",
        lora=erased_sd1.lora,  # the prompts come from its metadata
        seed=1,
        steps=2,
        cfg=1.0,
        sampler_name="euler",
        scheduler="normal",
        width=64,
        height=64,
    )
    out = run_node(preview, **inputs)
    (grid,) = out.values
    assert grid.shape[0] == 1 and grid.shape[2] > 2 * 64 and len(out.ui["erasure_compare"]) == 2
    comfy.mm.polls, comfy.mm.interrupt_after = 0, 1
    with pytest.raises(fake_comfy.InterruptProcessingException):
        run_node(preview, **inputs)
    with pytest.raises(comfy.errors.ConfigError, match="at most"):
        run_node(preview, **inputs | {"prompts": "\n".join(f"p{i}" for i in range(17))})


def test_preview_rows_say_what_each_row_is(comfy):
    rows = comfy.module("review_nodes")._rows
    lora = SimpleNamespace(
        metadata={
            "erasure_erased": '["apple"]',
            "erasure_kept": '["car"]',
            "erasure_neighbours": '{"apple": ["pear"]}',
        }
    )
    assert rows("", None, lora) == [("erased", "apple"), ("kept", "car"), ("neighbour", "pear")]
    concepts = ConceptList(("apple",), (1.0,), ("car",), (1.0,))
    assert rows("car\na red pear", concepts, None) == [("kept", "car"), ("", "a red pear")]  # typed lines keep theirs


def test_progress_events_are_optional_outside_a_server(comfy, monkeypatch):
    monkeypatch.setitem(sys.modules, "server", ModuleType("server"))  # scripts that run nodes without a server
    runtime = comfy.module("runtime")
    runtime.send_event("7", {"step": 1})  # must not raise
    callbacks = runtime.comfy_callbacks("7", 3, "esd")
    callbacks.on_step(1, 3, {})
    assert fake_comfy.ProgressBar.bars[-1].values == [1]
