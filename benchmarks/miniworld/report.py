"""Put the benchmark's result tables into docs/miniworld.md, between the miniworld markers.

    python -m benchmarks.miniworld.report      # after benchmarks/miniworld/run_all.sh

Reads `benchmarks/miniworld/results/<task>.json`, so every number in that section comes from a run anyone
can repeat; the machine and the settings are written next to the tables.
"""

from __future__ import annotations

import json
from pathlib import Path

from .evaluate import TASKS, markdown

ROOT = Path(__file__).resolve().parents[2]
RESULTS = Path(__file__).resolve().parent / "results"
BEGIN, END = "<!-- miniworld:begin -->", "<!-- miniworld:end -->"


def tables(results: Path = RESULTS) -> str:
    parts = []
    for task in TASKS:
        path = results / f"{task}.json"
        if not path.is_file():
            parts.append(f"### {task}\n\nNot run yet (`benchmarks/miniworld/run_all.sh`).\n")
            continue
        report = json.loads(path.read_text())
        settings = report["settings"]
        parts.append(markdown(task, report["tasks"][task]))
        parts.append(
            f"Machine: {report['machine']}; {settings['steps']} training steps per method, "
            f"{settings['images_per_concept']} images per concept, seed {settings['seed']}; "
            f"grid: `benchmarks/miniworld/results/{task}.png`.\n"
        )
    return "\n".join(parts)


def update_readme(readme: Path = ROOT / "docs" / "miniworld.md") -> None:
    text = readme.read_text()
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    readme.write_text(text[:start] + "\n" + tables() + text[end:])


if __name__ == "__main__":
    update_readme()
