"""Training that knows when it is done, and a fair share of the updates for every erased concept."""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path

import pytest
import torch

from erasure_core import erase, make_config
from erasure_core.callbacks import INFO_CONCEPT, INFO_ERASURE, INFO_PHASE, Callbacks
from erasure_core.context import TrainingContext
from erasure_core.trainer import _encode_prompts
from tests.conftest import make_backend

_ROOT = Path(tempfile.mkdtemp(prefix="erasure-until-"))
FAST = {"lr": 1e-2, "ddim_steps": 8, "audit_samples": 0}


class Recorder(Callbacks):
    """Keeps the info of every training step."""

    def __init__(self) -> None:
        self.infos: list[dict] = []
        super().__init__(on_step=self._record)

    def _record(self, step: int, total: int, info: dict) -> None:
        if info.get(INFO_PHASE) == "train":
            self.infos.append(info)


@pytest.fixture(scope="module")
def backend():
    return make_backend("sd1", _ROOT / "sd1")


def test_every_erased_concept_gets_the_same_number_of_updates(backend) -> None:
    concepts = ["cat", "dog", "car", "tree", "house"]
    config = make_config("esd", erase=concepts, steps=4, until_erased=False, **FAST)  # 4 per concept
    recorder = Recorder()
    erase(backend, config, recorder)
    counts = Counter(info[INFO_CONCEPT] for info in recorder.infos)
    assert counts == {c: 4 for c in concepts}  # a uniform draw per step gave 11 and 25 of 100 on the miniature world


def test_the_kept_list_does_not_change_which_concept_a_step_trains(backend) -> None:
    def order(keep: list[str]) -> list[str]:
        config = make_config("esd", erase=["cat", "dog", "car"], keep=keep, steps=3, until_erased=False, **FAST)
        recorder = Recorder()
        erase(backend, config, recorder)
        return [info[INFO_CONCEPT] for info in recorder.infos]

    assert order([]) == order(["tree", "house"])


def test_each_erased_concept_has_its_own_adam_state_unless_asked_for_one(backend) -> None:
    for per_concept, states in ((True, 3), (False, 1)):
        config = make_config("esd", erase=["cat", "dog", "car"], adam_per_concept=per_concept, **FAST)
        ctx = TrainingContext(backend, config, _encode_prompts(backend, config), backend.latent_shape(None))
        ctx.set_trainable([torch.nn.Parameter(torch.zeros(2))], fresh=True)
        seen = set()
        for _ in range(6):
            ctx.pick_erased()
            seen.add(id(ctx.optimizer))
        assert len(seen) == states


def test_a_concept_set_aside_is_not_trained_until_it_is_active_again(backend) -> None:
    config = make_config("esd", erase=["cat", "dog", "car"], **FAST)
    ctx = TrainingContext(backend, config, _encode_prompts(backend, config), backend.latent_shape(None))
    ctx.set_active([2])
    assert {ctx.pick_erased() for _ in range(5)} == {2}
    ctx.set_active([])
    assert {ctx.pick_erased() for _ in range(6)} == {0, 1, 2}


def test_training_stops_once_every_concept_is_erased_and_says_so(backend) -> None:
    config = make_config("esd", erase=["cat"], steps=400, check_every=5, erased_at=0.5, **FAST)
    recorder = Recorder()
    result = erase(backend, config, recorder)
    assert result.steps_trained < 400 and result.steps_trained % 5 == 0
    assert result.not_erased == {}
    assert result.checks[-1]["erasure"]["cat"] >= 0.5 > result.checks[0]["erasure"]["cat"] or len(result.checks) == 1
    measured = [info[INFO_ERASURE] for info in recorder.infos if INFO_ERASURE in info]
    assert len(measured) == len(result.checks) and set(measured[-1]) == {"cat"}
    assert result.info()["steps"] == result.steps_trained and "Every concept was erased" in result.stop_reason()
    assert result.report()["erasure_checks"] == result.checks


def test_a_budget_that_runs_out_names_the_concept_that_did_not_get_there(backend) -> None:
    slow = {**FAST, "lr": 1e-5}
    config = make_config("esd", erase=["cat", "dog"], steps=3, check_every=1, erased_at=1.0, **slow)
    result = erase(backend, config)
    assert result.steps_trained == 6 and set(result.not_erased) == {"cat", "dog"}  # 3 for each of two
    assert "cat" in result.stop_reason() and "budget of 3 steps per concept" in result.stop_reason()
    assert len(result.checks) == 6


def test_a_concept_that_resists_gets_its_own_budget_not_the_others(backend, monkeypatch) -> None:
    """cat is erased at the first check, dog never: dog trains its own `steps`, not the steps cat did not need
    (a shared budget gave one of five concepts 400 steps on the icons world, at a cost to every other concept)."""
    from erasure_core.audit import AuditReport, ProbeSet

    def scripted(self: ProbeSet) -> AuditReport:
        report = AuditReport()
        report.rows = [
            {"prompt": p.prompt, "role": p.role, "erasure": float(p.prompt == "cat"), "drift": 0.0}
            for p in self.probes
            if p.role == "erased"
        ]
        return report

    monkeypatch.setattr(ProbeSet, "score", scripted)
    config = make_config("esd", erase=["cat", "dog"], steps=6, check_every=1, erased_at=0.5, **FAST)
    recorder = Recorder()
    result = erase(backend, config, recorder)
    counts = Counter(info[INFO_CONCEPT] for info in recorder.infos)
    assert counts["dog"] == 6 and counts["cat"] <= 1 and result.steps_trained == sum(counts.values())
    assert result.not_erased == {"dog": 0.0} and "dog (0.00)" in result.stop_reason()


def test_fixed_steps_train_exactly_the_budget(backend) -> None:
    result = erase(backend, make_config("esd", erase=["cat"], steps=7, until_erased=False, **FAST))
    assert result.steps_trained == 7 and result.checks == [] and "fixed 7 steps" in result.stop_reason()


def test_a_lora_that_ran_out_of_budget_says_so_in_its_header(backend, tmp_path: Path) -> None:
    from erasure_core import export_lora, load_lora
    from erasure_core.frontend.lora_info import describe

    slow = {**FAST, "lr": 1e-5}
    result = erase(backend, make_config("esd", erase=["cat"], steps=2, check_every=1, erased_at=1.0, **slow))
    text = describe(load_lora(export_lora(result, tmp_path / "x.safetensors")).metadata)
    assert "NOT erased" in text and "cat 0.0" in text and "steps: 2" in text


def _scripted_scores(monkeypatch, erased: set[str]) -> None:
    """The monitor measures the concepts in `erased` as fully erased and the others as not at all."""
    from erasure_core.audit import AuditReport, ProbeSet

    def scripted(self: ProbeSet) -> AuditReport:
        report = AuditReport()
        report.rows = [
            {"prompt": p.prompt, "role": p.role, "erasure": float(p.prompt in erased), "drift": 0.0}
            for p in self.probes
            if p.role == "erased"
        ]
        return report

    monkeypatch.setattr(ProbeSet, "score", scripted)


def test_a_resumed_lora_is_measured_first_and_only_what_does_not_hold_is_trained(backend, monkeypatch) -> None:
    """Topping a LoRA up on a fine-tune of its model: a concept it already erases there costs no step, and a LoRA
    that holds for every concept comes back unchanged after 0 steps."""
    from erasure_core import export_lora, load_lora

    config = make_config("esd", erase=["cat", "dog"], steps=4, until_erased=False, **FAST)
    path = export_lora(erase(backend, config), Path(tempfile.mkdtemp(dir=_ROOT)) / "first.safetensors", torch.float32)
    resumed = make_config("esd", erase=["cat", "dog"], steps=5, check_every=1, erased_at=0.5, **FAST)

    _scripted_scores(monkeypatch, {"cat", "dog"})
    held = erase(backend, resumed, resume=load_lora(path))
    assert held.steps_trained == 0 and held.not_erased == {} and held.checks[0]["step"] == 0
    assert "already erases every concept" in held.stop_reason()
    for name, w in load_lora(path).weights.items():  # handed back as loaded
        key = next(k for k, v in held.key_map.items() if v == name)
        torch.testing.assert_close(held.weights[key].up, w.up)

    _scripted_scores(monkeypatch, {"cat"})
    recorder = Recorder()
    topped = erase(backend, resumed, recorder, resume=load_lora(path))
    assert Counter(info[INFO_CONCEPT] for info in recorder.infos) == {"dog": 5}
    assert topped.not_erased == {"dog": 0.0}
