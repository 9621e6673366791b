"""The audit's measure on edits whose answer is known: none, the ESD target exactly, and half of it."""

from __future__ import annotations

import pytest
import torch

from erasure_core.audit import Probe, ProbeSet
from erasure_core.backends.diffusers_backend import DiffusersBackend
from erasure_core.frontend.verdict import transfer_verdict

ETA = 1.5
ERASED_AT = 0.7


def _probes(backend: DiffusersBackend) -> ProbeSet:
    probes = [Probe("cat", "erased", (("", 1.0),), ETA), Probe("dog", "kept")]
    return ProbeSet(backend, probes, 2, 6, 3.0, 0, backend.latent_shape())


def _rows(probes: ProbeSet) -> dict[str, dict]:
    return {r["prompt"]: r for r in probes.score().rows}


def test_an_unedited_model_reads_no_erasure_and_no_drift(sd1_backend: DiffusersBackend) -> None:
    rows = _rows(_probes(sd1_backend))
    # Zero up to float rounding: the original predictions were made in a batch with the unconditional ones.
    assert rows["cat"]["erasure"] < 1e-4 and rows["cat"]["drift"] < 1e-4 and rows["dog"]["drift"] < 1e-4


@pytest.mark.parametrize("fraction", [1.0, 0.5])
def test_an_edit_onto_the_esd_target_reads_its_fraction(
    sd1_backend: DiffusersBackend, monkeypatch: pytest.MonkeyPatch, fraction: float
) -> None:
    """The ESD paper's target for the erased prompt c with anchor "" is eps("") - eta (eps(c) - eps("")); an edit
    that moves the prediction that far reads erasure 1, half way 0.5, and leaves the kept prompt untouched."""
    probes = _probes(sd1_backend)
    original = sd1_backend.predict_noise
    cat, empty = sd1_backend.encode_prompts(["cat", ""]).select(0), sd1_backend.encode_prompts([""]).select(0)

    def edited(x: torch.Tensor, t: torch.Tensor, cond) -> torch.Tensor:
        out = original(x, t, cond)
        if torch.equal(cond.context, cat.repeat(x.shape[0]).context):
            unconditional = original(x, t, empty.repeat(x.shape[0]))
            target = unconditional - ETA * (out - unconditional)
            return out + fraction * (target - out)
        return out

    monkeypatch.setattr(sd1_backend, "predict_noise", edited)
    report = probes.score()
    rows = {r["prompt"]: r for r in report.rows}
    assert rows["cat"]["erasure"] == pytest.approx(fraction, abs=1e-4)
    assert rows["cat"]["drift"] > 0.1 and rows["dog"]["drift"] < 1e-4

    # Read on a model the LoRA was applied to: the full edit holds at the stopping threshold, half of it does not.
    held, verdict = transfer_verdict(report, ERASED_AT, "community.safetensors")
    assert held == (fraction >= ERASED_AT)
    if held:
        assert verdict.startswith("The erasure held on community.safetensors: cat 1.00")
    else:
        assert "did not hold on community.safetensors for cat: cat 0.50" in verdict and "--resume" in verdict

    # Against the LoRA's erasure on the model it was made on (its final audit): the same score holds when it keeps
    # HELD_SHARE of that, and not when it lost more, whatever the absolute threshold says.
    from erasure_core.frontend.verdict import HELD_SHARE

    made_on = fraction / HELD_SHARE - 0.01  # a little below: kept just over the share
    assert transfer_verdict(report, ERASED_AT, reference={"cat": made_on})[0]
    held, verdict = transfer_verdict(report, ERASED_AT, reference={"cat": fraction / HELD_SHARE + 0.05})
    assert not held and "made-on model" in verdict and "of its erasure on the model it was made on" in verdict
