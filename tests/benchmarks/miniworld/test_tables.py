"""The docs' result tables agree with the result files they are generated from."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from benchmarks.miniworld import tables


def test_every_generated_table_matches_its_result_files() -> None:
    stale = tables.update(check=True)
    assert stale == [], f"regenerate with `python -m benchmarks.miniworld.tables`: {stale}"


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
