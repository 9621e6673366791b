"""A tiny run of the benchmark and of the demo command, end to end (a few steps, a few images)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.miniworld.evaluate import main as evaluate
from benchmarks.miniworld.world import OBJECTS_WORLD
from erasure_core import load_lora
from erasure_core.cli import main as cli

KEYS = {"ESR-1", "ESR-5", "PSR-1", "PSR-5", "neighbour-PSR-1", "seconds", "peak_mem_mb"}


def test_list_concepts_prints_json(capsys: pytest.CaptureFixture) -> None:
    assert evaluate(["--list-concepts"]) == 0
    concepts = json.loads(capsys.readouterr().out)
    assert set(concepts) == {"world", "groups", "styles", "implicit"} and concepts["world"] == "objects"
    assert evaluate(["--world", "icons", "--list-concepts"]) == 0
    assert json.loads(capsys.readouterr().out)["implicit"] == "underwater"


def test_neighbours_run_reports_the_nearest_concept_and_the_synonym_on_their_own(tmp_path: Path) -> None:
    report_path = tmp_path / "r.json"
    argv = ["--task", "neighbours", "--erase", "car", "--methods", "none,esd", "--steps", "2",
            "--images-per-concept", "2", "--device", "cpu", "--json", str(report_path), "--out-dir", str(tmp_path)]  # fmt: skip
    assert evaluate(argv) == 0
    report = json.loads(report_path.read_text())
    task = report["tasks"]["neighbours"]
    assert task["nearest"]["car"] in OBJECTS_WORLD.objects and task["nearest"]["car"] != "car"
    esd = report["methods"]["esd"]
    assert {"nearest-PSR-1", "neighbour-PSR-1", "far-PSR-1", "synonym-leak"} <= set(esd)
    assert set(esd["per_concept"]) == {"car"} and "synonym-leak" in esd["per_concept"]["car"]  # "automobile"
    assert "synonym-leak" in report["methods"]["none"] and report["world"] == "objects"
    assert "| nearest-PSR-1 |" in (tmp_path / "neighbours.md").read_text().replace(" | ", " |\n| ")


def test_tiny_objects_run_writes_a_well_formed_report(tmp_path: Path) -> None:
    report_path = tmp_path / "r.json"
    argv = ["--task", "objects", "--erase", "apple,car", "--keep", "banana", "--methods", "none,esd", "--steps", "2",
            "--images-per-concept", "2", "--device", "cpu", "--json", str(report_path), "--out-dir", str(tmp_path)]  # fmt: skip
    assert evaluate(argv) == 0
    report = json.loads(report_path.read_text())
    assert set(report["methods"]) == {"none", "esd"}
    for row in report["methods"].values():
        assert set(row) >= KEYS and all(0 <= row[k] <= 100 for k in KEYS if "PSR" in k or "ESR" in k)
        each = row["ESR-1 each"]  # every erased concept on its own; the mean is theirs
        assert set(each) == {"apple", "car"} and abs(sum(each.values()) / 2 - row["ESR-1"]) < 1e-9
    assert report["methods"]["none"]["ESR-1"] <= 50  # the unedited model draws its concepts
    assert (tmp_path / "objects.png").is_file() and (tmp_path / "objects.md").read_text().startswith("### objects")


def test_set_may_name_one_methods_settings_but_not_settings_no_method_has(tmp_path: Path) -> None:
    argv = ["--task", "objects", "--erase", "apple", "--keep", "banana", "--methods", "esd", "--steps", "1", "--images-per-concept", "2",
            "--device", "cpu", "--out-dir", str(tmp_path), "--json", str(tmp_path / "r.json")]  # fmt: skip
    # AGE's joint_step: ESD ignores it. A later --set wins (the study scripts pin settings under each run's own).
    pinned, own = '{"ddim_steps": 50, "joint_step": false}', '{"ddim_steps": 4, "pool_refreshes": 0}'
    assert evaluate([*argv, "--set", pinned, "--set", own]) == 0
    overrides = json.loads((tmp_path / "r.json").read_text())["settings"]["overrides"]
    assert overrides == {"ddim_steps": 4, "joint_step": False, "pool_refreshes": 0}
    with pytest.raises(SystemExit, match="joint_stepp"):
        evaluate([*argv, "--set", '{"joint_stepp": false}'])


def test_demo_command_erases_and_writes_lora_and_grid(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "no-apple.safetensors"
    argv = ["erase", "--model", "demo", "--erase", "apple", "--keep", "banana", "--method", "esd", "--steps", "3",
            "--out", str(out)]  # fmt: skip
    assert cli(argv) == 0
    printed = capsys.readouterr().out
    assert "apple" in printed and "before/after grid written" in printed
    assert out.with_suffix(".png").is_file()
    info = load_lora(out).info()
    assert info["base_model"] == "demo" and info["config"]["lr"] == 3e-3  # the demo recipe


def test_impact_matrix_averages_drops_by_group_leaving_out_the_erased_concept() -> None:
    from benchmarks.miniworld.evaluate import impact_markdown

    groups = OBJECTS_WORLD.groups
    fruits = groups["fruits"]
    impact = {o: 0.0 for o in OBJECTS_WORLD.objects} | {fruits[0]: 100.0, fruits[1]: 20.0, groups["tools"][0]: 10.0}
    table = impact_markdown({"methods": {"esd": {"impact": {fruits[0]: impact}}, "none": {"ESR-1": 0.0}}})
    row = next(line for line in table.splitlines() if line.startswith("| fruits |"))
    cells = [float(c) for c in row.strip("|").split("|")[1:]]
    # 20 over the 4 other fruits (the erased one's own 100 is left out); 10 over the 5 tools; nothing elsewhere.
    assert cells == [5.0, 0.0, 0.0, 0.0, 2.0]
    assert "(esd)" in table and "(none)" not in table
