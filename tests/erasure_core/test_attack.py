"""The recovery-attack audit: an erased concept its name no longer draws comes back under attack, an intact one
is reported as drawn, and bad input is refused before anything changes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from erasure_core import ConfigError, ModelError, erase, export_lora, make_config
from erasure_core.attack import AttackConfig, attack
from erasure_core.cli import main
from erasure_core.demo import load_demo
from erasure_core.lora.adapter import LoraTensors
from tests.conftest import make_backend

QUICK = {"budget_s": 60.0, "samples": 2, "held_out": 4, "vocabulary_limit": 300, "soft_steps": 60, "sweep_words": 8}


@pytest.fixture(scope="module")
def demo():
    return load_demo().backend


@pytest.fixture(scope="module")
def uce_apple(demo):
    """UCE's closed-form erasure of "apple" from the demo model: its name no longer draws it."""
    return erase(demo, make_config("uce", erase=["apple"], audit_samples=1))


def _state(backend) -> tuple[dict[str, torch.Tensor], dict[str, bool]]:
    params = dict(backend.unet.named_parameters())
    return {k: v.detach().clone() for k, v in params.items()}, {k: v.requires_grad for k, v in params.items()}


def test_attacks_bring_back_what_the_name_no_longer_draws_and_leave_the_model_as_it_was(demo, uce_apple) -> None:
    weights_before, flags_before = _state(demo)
    report = attack(demo, uce_apple.weights, AttackConfig("apple", **QUICK))
    plain = report.to_dict()["plain_success_rate"]
    by_name = {a.name: a for a in report.attacks}
    assert plain <= 0.25  # the erasure works on the concept's own name
    assert by_name["soft"].success_rate >= 0.75 and by_name["soft"].success_rate > plain
    assert report.success_rate >= max(a.success_rate for a in report.attacks)
    assert by_name["discrete"].best_prompt.endswith("apple") and by_name["sweep"].best_prompts
    weights_after, flags_after = _state(demo)
    assert flags_after == flags_before
    assert all(torch.equal(weights_before[k], weights_after[k]) for k in weights_before)


def test_an_intact_concept_is_recovered_by_its_own_name(demo, uce_apple) -> None:
    nothing = {
        k: LoraTensors(torch.zeros_like(w.down), torch.zeros_like(w.up), w.alpha) for k, w in uce_apple.weights.items()
    }
    report = attack(demo, nothing, AttackConfig("apple", attacks=("sweep",), **QUICK))
    assert report.to_dict()["plain_success_rate"] == 1.0 and report.success_rate == 1.0


def test_a_concept_the_model_never_drew_is_said_so_not_reported_as_zero(demo, uce_apple) -> None:
    with pytest.raises(ModelError, match="does not draw 'qwxz plonk' in the first place"):
        attack(demo, uce_apple.weights, AttackConfig("qwxz plonk", **QUICK))


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"budget_s": 0.0}, "more than 0 seconds"),
        ({"attacks": ("sweep", "guess")}, "Unknown attack"),
        ({"concept": " "}, "Name the concept"),
    ],
)
def test_bad_settings_are_refused_before_the_model_is_touched(demo, uce_apple, settings, message) -> None:
    config = AttackConfig(**({"concept": "apple"} | QUICK | settings))
    with pytest.raises(ConfigError, match=message):
        attack(demo, uce_apple.weights, config)
    assert not any("lora" in name for name, _ in demo.unet.named_modules())


def test_cli_writes_the_report_and_the_soft_embedding_and_refuses_other_models(
    demo, uce_apple, tmp_path: Path, capsys
) -> None:
    lora = export_lora(uce_apple, tmp_path / "no-apple.safetensors")
    report = tmp_path / "attack.json"
    args = ["attack", "--model", "demo", "--lora", str(lora), "--budget", "10", "--held-out", "2", "--samples", "1"]
    assert main([*args, "--attacks", "sweep,soft", "--report", str(report)]) == 0
    data = json.loads(report.read_text())
    assert data["concept"] == "apple" and set(data["attacks"]) == {"sweep", "soft"}
    assert 0.0 <= data["success_rate"] <= 1.0 and "guidance direction" in data["measure"] and "CPU" in data["machine"]
    context = load_file(data["attacks"]["soft"]["embedding_file"])["context"]
    assert context.shape == demo.encode_prompts(["apple"]).context.shape
    assert "not a proof" in capsys.readouterr().out

    assert main([*args, "--budget", "0"]) == 2 and "more than 0 seconds" in capsys.readouterr().err
    tiny = make_backend("sdxl", tmp_path / "sdxl")
    other = export_lora(erase(tiny, make_config("uce", erase=["cat"], audit_samples=0)), tmp_path / "sdxl.safetensors")
    assert main(["attack", "--model", "demo", "--lora", str(other), "--concept", "apple"]) == 2
    assert "does not fit the loaded model" in capsys.readouterr().err


class _Slow:
    """The demo backend, each UNet evaluation made 20 ms slower: a large model on a slow device, in miniature."""

    def __init__(self, backend) -> None:
        self._backend = backend

    def __getattr__(self, name):
        return getattr(self._backend, name)

    def predict_noise(self, *args, **kwargs):
        import time

        time.sleep(0.02)
        return self._backend.predict_noise(*args, **kwargs)


def test_the_budget_bounds_the_sampling_too(demo, uce_apple) -> None:
    """Where sampling the asked trials would outlast its share of the budget, fewer are sampled and the report says
    so; where not even one fits, the audit refuses before it samples anything."""
    slow = _Slow(demo)
    quick = {**QUICK, "samples": 4, "held_out": 8, "soft_steps": 5}
    report = attack(slow, uce_apple.weights, AttackConfig("apple", **{**quick, "budget_s": 6.0}))
    assert 1 <= report.trials["held_out"] < 8 and report.trials["fit"] < 4
    assert len(report.plain_recovery) == report.trials["held_out"] and "budget allowed" in report.note
    with pytest.raises(ConfigError, match="too small for this model"):
        attack(slow, uce_apple.weights, AttackConfig("apple", **{**quick, "budget_s": 0.05}))
