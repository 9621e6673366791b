"""The first miniature world's task tables (docs/miniworld.md), from `benchmarks/miniworld/results/<task>.json`.

`python -m benchmarks.tables` writes them into the doc after `benchmarks/miniworld/run_all.sh`; the machine and the
settings are written next to each table.
"""

from __future__ import annotations

import json
from pathlib import Path

from .evaluate import TASKS, markdown

RESULTS = Path(__file__).resolve().parent / "results"


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
