"""Cancel anywhere: every phase of every method polls the host's stop hook often, and a cancel in any of them
leaves the model as it was and writes nothing."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from erasure_core import Callbacks, Cancelled, erase, make_config, run_audit
from erasure_core.backends.diffusers_backend import DiffusersBackend
from erasure_core.cancel import current_phase
from tests.erasure_core.test_trainer import _assert_untouched, _snapshot

# Small enough to run every phase of every method in seconds; check_every 2 puts erasure checks between steps.
QUICK = {"steps": 4, "ddim_steps": 5, "audit_samples": 2, "audit_ddim_steps": 6, "check_every": 2, "check_samples": 2}
SEARCH = {"k_closest": 8, "num_centers": 4}
RUNS = {
    "esd": ({}, {"train", "check", "audit"}),
    "eap": (SEARCH, {"search", "train", "check", "audit"}),
    "age": (SEARCH, {"search", "train", "check", "audit"}),
    "uce": ({}, {"solve", "audit"}),
    "esd-guard": ({"guard_neighbours": 2}, {"search", "train", "check", "audit"}),
}
# Work between two polls of the stop hook, at most: UNet evaluations (batched calls) in one training step of the
# costliest method (a search-and-preserve step) or one anywhere else; a few text encodings (prompts, one chunk of
# the vocabulary), which take milliseconds.
MOST_EVALS_BETWEEN_POLLS = {"training": 8, "other": 1}
MOST_ENCODINGS_BETWEEN_POLLS = 4
TRAINING = {"train", "sample"}  # a training step samples its latents on the way


class Work:
    """Counts the backend's UNet evaluations and text encodings, and records them at every poll of the stop hook."""

    def __init__(self, backend: DiffusersBackend, monkeypatch: pytest.MonkeyPatch) -> None:
        self.evals = 0
        self.encodings = 0
        self.polls: list[tuple[str, int, int]] = []
        monkeypatch.setattr(backend, "predict_noise", self._counted(backend.predict_noise, "evals"))
        for name in ("encode_prompts", "encode_text"):
            monkeypatch.setattr(backend, name, self._counted(getattr(backend, name), "encodings"))

    def _counted(self, fn: Any, counter: str) -> Any:
        def counted(*args: Any, **kwargs: Any) -> Any:
            setattr(self, counter, getattr(self, counter) + 1)
            return fn(*args, **kwargs)

        return counted

    def poll(self) -> bool:
        self.polls.append((current_phase(), self.evals, self.encodings))
        return False


def _config(run: str) -> Any:
    method = run.split("-")[0]
    return make_config(method, erase=["cat"], keep=["dog"], **QUICK, **RUNS[run][0])


@pytest.mark.parametrize("run", sorted(RUNS))
def test_every_phase_polls_the_stop_hook_between_small_units_of_work(
    sd1_backend: DiffusersBackend, monkeypatch: pytest.MonkeyPatch, run: str
) -> None:
    work = Work(sd1_backend, monkeypatch)
    erase(sd1_backend, _config(run), Callbacks(should_stop=work.poll))
    phases = {p for p, _, _ in work.polls}
    assert RUNS[run][1] <= phases, f"phases that never polled: {RUNS[run][1] - phases}"
    ends = [*work.polls, ("end", work.evals, work.encodings)]
    for (phase, evals, encodings), (_, next_evals, next_encodings) in itertools.pairwise(ends):
        most = MOST_EVALS_BETWEEN_POLLS["training" if phase in TRAINING else "other"]
        assert next_evals - evals <= most, f"{next_evals - evals} UNet evaluations after a poll in {phase}"
        assert next_encodings - encodings <= MOST_ENCODINGS_BETWEEN_POLLS, f"encodings after a poll in {phase}"
    assert work.polls[0][1] == 0, "UNet evaluations before the first poll"


def _cancel_cases() -> list[tuple[str, str]]:
    return [(run, phase) for run in sorted(RUNS) for phase in sorted(RUNS[run][1])]


@pytest.mark.parametrize(("run", "phase"), _cancel_cases())
def test_a_cancel_in_any_phase_stops_there_and_leaves_the_model_unchanged(
    sd1_backend: DiffusersBackend, run: str, phase: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("ERASURE_CACHE_DIR", str(cache))  # the vocabulary search's cache must not get half a row
    before = _snapshot(sd1_backend)
    polls_in_phase: list[str] = []

    def stop_in_phase() -> bool:
        if current_phase() == phase:
            polls_in_phase.append(phase)
        return len(polls_in_phase) >= 2 or (len(polls_in_phase) == 1 and phase in {"search", "solve"})

    with pytest.raises(Cancelled) as error:
        erase(sd1_backend, _config(run), Callbacks(should_stop=stop_in_phase))
    assert error.value.phase == phase
    assert "unchanged and nothing was saved" in str(error.value)
    _assert_untouched(sd1_backend, before)
    if phase == "search":
        assert not [f for f in cache.rglob("*") if f.is_file()], "a cancelled search wrote to the cache"


def test_a_cancelled_audit_leaves_the_model_unchanged(sd1_backend: DiffusersBackend) -> None:
    config = make_config("esd", erase=["cat"], **{**QUICK, "until_erased": False})
    result = erase(sd1_backend, config)
    before = _snapshot(sd1_backend)
    with pytest.raises(Cancelled, match="during the audit") as error:
        run_audit(sd1_backend, result.weights, config, should_stop=lambda: current_phase() == "audit")
    assert error.value.phase == "audit"
    _assert_untouched(sd1_backend, before)
