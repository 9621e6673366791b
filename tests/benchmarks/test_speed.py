"""The speed benchmark's --tiny run: every method, the default recipe next to the faithful reference loop."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import speed
from benchmarks.reference_loop import REFERENCE_ITERATIONS


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    path = tmp_path_factory.mktemp("speed") / "speed.json"
    assert speed.main(["--tiny", "--json", str(path)]) == 0
    return json.loads(Path(path).read_text())


def test_tiny_run_reports_every_method_with_both_recipes(report: dict) -> None:
    rows = report["models"]["tiny"]["methods"]
    assert set(rows) == {"esd", "eap", "age", "uce"}
    for method in ("esd", "eap", "age"):
        default, reference = rows[method]["default"], rows[method]["reference"]
        assert reference["steps"] == REFERENCE_ITERATIONS[method]
        for row in (default, reference):
            assert row["projected_s"] > 0 and row["peak_mb"] > 0 and row["unet_evals_per_concept"] > 0
        assert rows[method]["speedup"] == pytest.approx(reference["projected_s"] / default["projected_s"])
        assert 0 < default["setup_s"] < default["projected_s"]
        assert rows[method]["train_speedup"] > rows[method]["speedup"]  # the set-up is left out of the second
    assert rows["uce"]["default"]["projected_s"] > 0 and "reference" not in rows["uce"]


def test_reference_loop_costs_what_the_issue_counts_from_the_reference_code(report: dict) -> None:
    rows = report["models"]["tiny"]["methods"]
    # About 54 UNet evaluations per ESD iteration and 107 per EAP loop iteration (the issue's count).
    assert rows["esd"]["reference"]["unet_evals_per_concept"] / 1000 == pytest.approx(54, abs=3)
    assert rows["eap"]["reference"]["unet_evals_per_concept"] / 2000 == pytest.approx(107, abs=6)


def test_default_recipe_spends_far_fewer_unet_evaluations(report: dict) -> None:
    for method in ("esd", "eap", "age"):
        row = report["models"]["tiny"]["methods"][method]
        assert row["default"]["unet_evals_per_concept"] * 20 < row["reference"]["unet_evals_per_concept"]


def test_reference_loop_trains_full_weights_on_a_second_copy_and_restores_them(tmp_path: Path) -> None:
    from benchmarks.reference_loop import ReferenceLoop
    from tests.conftest import make_backend

    backend = make_backend("sd1", tmp_path)
    before = backend.fingerprint()
    loop = ReferenceLoop(backend, "eap", "cat", ["dog", "car", "tree"])
    assert loop.frozen.unet is not backend.unet
    loop.run(2)
    assert backend.fingerprint() != before  # the reference fine-tunes the weights themselves
    assert loop.unet_evals > 0
    loop.close()
    assert backend.fingerprint() == before


def test_rows_without_a_reference_borrow_one_of_the_same_machine_and_model() -> None:
    from benchmarks.speed import reference_rows, show

    def report(overrides: dict, with_reference: bool, machine: str = "cpu") -> dict:
        default = {"steps": 100, "s_per_step": 0.1, "setup_s": 10.0, "projected_s": 20.0, "peak_mb": 1.0}
        row: dict = {"default": default}
        if with_reference:
            row["reference"] = {"steps": 1000, "s_per_step": 0.4, "projected_s": 400.0, "peak_mb": 1.0}
            row["speedup"] = 20.0
        return {"machine": machine, "overrides": overrides, "models": {"m": {"methods": {"eap": row}}}}

    faithful, pooled, elsewhere = report({}, True), report({"pool_refreshes": 4}, False), report({}, False, "gpu")
    references = reference_rows([faithful, pooled, elsewhere])
    assert "| 20.0x* | 40.0x* |" in show(pooled, references)  # 400 / 20 end to end, 400 / (20 - 10) without set-up
    assert "| 20.0x | 40.0x |" in show(faithful, references)
    assert "x*" not in show(elsewhere, references)  # another machine's reference is never used


def test_period_steps_take_one_count_or_one_per_method() -> None:
    import argparse

    from benchmarks.speed import period_steps

    assert period_steps("10") == {"esd": 10, "eap": 10, "age": 10}
    assert period_steps("age=10,eap=30") == {"age": 10, "eap": 30}  # ESD then runs whole periods
    with pytest.raises(argparse.ArgumentTypeError, match="unknown method"):
        period_steps("sdxl=10")


def test_pooled_projection_times_the_cheap_first_period_once_and_a_later_period_for_the_rest(tmp_path: Path) -> None:
    from erasure_core import erase, make_config
    from tests.conftest import make_backend

    backend = make_backend("sd1", tmp_path)
    before = backend.fingerprint()
    settings = {"steps": 16, "ddim_steps": 10, "pool_refreshes": 2, "pool_fresh_steps": 0}
    row = speed.default_recipe(backend, "esd", settings, None)
    whole = erase(backend, make_config("esd", erase=[speed.CONCEPT], audit_samples=0, **settings))
    # First period: 2 trajectories x 10 guided steps x 2 with their predictions kept, and 8 x (forward + backward).
    first = 2 * 10 * 2 + 8 * 2
    # The later period samples 2 x 9 x 2 and makes the original model's predictions on first visits (2 each, at
    # most 8 of them); extrapolating the first period instead would give exactly 2 x first.
    later = row["unet_evals_per_concept"] - first
    assert 2 * 9 * 2 + 8 * 2 + 2 <= later <= 2 * 9 * 2 + 8 * 2 + 2 * 8
    assert abs(row["unet_evals_per_concept"] - whole.unet_evals) <= 2 * 8  # visits differ, nothing else
    assert backend.fingerprint() == before  # both timed runs hand the model back unchanged


def test_timed_period_trains_as_the_whole_run_resolves(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A period has fewer steps than the run, which alone would resolve AGE's `auto` joint step (one concept in 256
    # steps or more) and the pool differently: the period must train the whole run's recipe.
    from erasure_core.methods import age
    from tests.conftest import make_backend

    calls = {"joint": 0, "alternating": 0}

    def counted(name: str):
        step = getattr(age, f"{name}_step")

        def wrapped(ctx, state):
            calls[name] += 1
            return step(ctx, state)

        return wrapped

    for name in calls:
        monkeypatch.setattr(age, f"{name}_step", counted(name))
    backend = make_backend("sd1", tmp_path)
    settings = {**speed.TINY, "steps": 256}
    row = speed.default_recipe(backend, "age", settings, 2)
    assert row["steps"] == 256 and calls["alternating"] == 0 and calls["joint"] > 0
