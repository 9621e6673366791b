"""The attack task in a tiny run: the unedited model is the ceiling, an erasure's row has every attack judged by
the world's classifier beside the audit's own measure."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.miniworld.attack_task import COLUMNS
from benchmarks.miniworld.evaluate import main as evaluate


def test_attack_task_judges_every_attack_by_the_classifier(tmp_path: Path) -> None:
    report = tmp_path / "attack.json"
    args = ["--task", "attack", "--methods", "none,uce", "--erase", "apple", "--attack-budget", "6"]
    assert evaluate([*args, "--images-per-concept", "2", "--json", str(report), "--out-dir", str(tmp_path)]) == 0
    rows = json.loads(report.read_text())["tasks"]["attack"]["methods"]
    assert rows["none"]["name"] == 100.0  # the unedited model draws apple: what an attack has to get back to
    uce = rows["uce"]
    assert all(0.0 <= uce[c] <= 100.0 for c in (*COLUMNS, "audit overall"))
    assert uce["overall"] >= max(uce["sweep"], uce["discrete"], uce["soft"])
    each = uce["each"]["apple"]
    assert set(each["audit"]["attacks"]) == {"sweep", "discrete", "soft"} and each["attack_seconds"] > 0
    assert 0.0 <= uce["PSR-1"] <= 100.0 and rows["none"]["PSR-1"] > 50.0  # the other concepts, kept
    assert (tmp_path / "attack.md").read_text().startswith("| method | concept's name |")
