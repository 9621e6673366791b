"""The docs' result tables agree with the result files they are generated from."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from benchmarks import tables


def test_every_generated_table_matches_its_result_files() -> None:
    stale = tables.update(check=True)
    assert stale == [], f"regenerate with `python -m benchmarks.tables`: {stale}"


def test_a_hand_edited_figure_is_caught_and_rewritten(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    name, table = next(iter(tables.TABLES.items()))
    doc = tmp_path / table.doc
    doc.parent.mkdir(parents=True)
    shutil.copy(tables.ROOT / table.doc, doc)
    monkeypatch.setattr(tables, "ROOT", tmp_path)
    monkeypatch.setattr(tables, "TABLES", {name: table})
    rendered = tables.render(name)
    first_row = rendered.splitlines()[2]
    edited = first_row.replace(" | ", " | 12345 | ", 1)
    doc.write_text(doc.read_text().replace(first_row, edited))

    assert name in tables.update(check=True)
    assert edited in doc.read_text()  # check mode writes nothing
    assert name in tables.update()
    assert tables.update(check=True) == [] and first_row in doc.read_text()


def test_an_empty_block_is_filled_without_touching_the_next_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name, table = next(iter(tables.TABLES.items()))
    doc = tmp_path / table.doc
    doc.parent.mkdir(parents=True)
    other = "<!-- table:not-ours -->\nkept as it is\n<!-- /table -->\n"
    doc.write_text(f"<!-- table:{name} -->\n<!-- /table -->\n\ntext between\n\n{other}")
    monkeypatch.setattr(tables, "ROOT", tmp_path)
    monkeypatch.setattr(tables, "TABLES", {name: table})
    assert tables.update() == [name]
    assert (
        doc.read_text() == f"<!-- table:{name} -->\n{tables.render(name)}\n<!-- /table -->\n\ntext between\n\n{other}"
    )


def test_a_table_without_results_must_say_it_was_not_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    table = tables.Table("doc.md", ("missing/none.json",), ("ESR-1",), tables._methods)
    doc = tmp_path / "doc.md"
    monkeypatch.setattr(tables, "ROOT", tmp_path)
    monkeypatch.setattr(tables, "TABLES", {"t": table})
    doc.write_text(f"<!-- table:t -->\n{tables.NOT_RUN}\n<!-- /table -->\n")
    assert tables.update(check=True) == []  # nothing to disagree with
    doc.write_text("<!-- table:t -->\n| old | 99 |\n<!-- /table -->\n")  # figures with no results behind them
    assert tables.update(check=True) == ["t"]
    assert tables.update() == ["t"] and doc.read_text() == f"<!-- table:t -->\n{tables.NOT_RUN}\n<!-- /table -->\n"


def test_every_kind_of_table_is_registered_in_a_block_of_its_doc() -> None:
    kinds = {type(t).__name__ for t in tables.TABLES.values()}
    assert kinds == {
        "Table",
        "Comparison",
        "SpeedReports",
        "SpeedSummary",
        "ComfySpeed",
        "CommandOutput",
        "MiniworldTasks",
        "BatchCost",
        "BatchScale",
    }
    for name, table in tables.TABLES.items():
        assert tables._pattern(name).search((tables.ROOT / table.doc).read_text()), name


def test_a_comparison_shows_compare_recipes_rows_under_its_own_names() -> None:
    from benchmarks.miniworld import compare_recipes

    part = tables._part("M/objects.json", "R/miniworld_objects_faithful_seed1.json", "age,esd")
    table = tables.Comparison(
        "docs/speed.md", ("a", "b"), (part, tables.Part(part.faithful, part.default, ("esd",), "x")), "recipe"
    )
    rendered = table.render().splitlines()
    sides = [
        compare_recipes.mean_report([json.loads((tables.ROOT / p).read_text())])
        for p in (*part.faithful, *part.default)
    ]
    expected = compare_recipes.markdown(compare_recipes.compare(*sides), ("a", "b")).splitlines()
    rows = {line.split(" | ")[0]: line for line in expected[2:]}
    assert rendered[0] == expected[0].replace("| method |", "| recipe |", 1)
    assert rendered[2:4] == [rows["| age"], rows["| esd"]] and rendered[4] == rows["| esd"].replace("| esd", "| x", 1)
    assert rendered[-1].startswith("From `benchmarks/miniworld/results/objects.json`")


def test_short_report_specs_expand_and_fold_back() -> None:
    spec = "M/neighbours.json R/miniworld_neighbours_seed{1,2,3}.json R/x_{a,b_c}.json"
    paths = tables._expand(spec)
    assert paths[0] == "benchmarks/miniworld/results/neighbours.json" and len(paths) == 6
    assert paths[1:4] == tuple(f"benchmarks/results/miniworld_neighbours_seed{i}.json" for i in (1, 2, 3))
    folded = tables._braced(paths)
    assert sum((tables._expand(f.replace("benchmarks/results/", "R/")) for f in folded), ()) == paths


def test_the_fleet_projection_follows_from_the_measured_seconds_per_concept() -> None:
    table = tables.TABLES["batch-scale"]
    report = json.loads((tables.RESULTS / table.fresh).read_text())
    esd = report["models"]["sdxl"]["methods"]["esd"]["default"]["projected_s"]
    row = next(line for line in table.render().splitlines() if line.startswith("| ESD |"))
    gpu_hours = table.concepts * table.checkpoints * esd / 3600
    assert f"| {gpu_hours:,.0f} / " in row and f"| {gpu_hours / 64:,.0f} / " in row
