"""Quality of the default recipe against the faithful one on the miniature world, from `evaluate` reports.

    python -m benchmarks.miniworld.evaluate --task objects --methods none,esd,eap,age \\
        --set '{"pool_refreshes": 0}' --json faithful.json          # fresh partial sampling at every step
    python -m benchmarks.miniworld.evaluate --task objects --methods none,esd,eap,age --json default.json
    python -m benchmarks.miniworld.compare_recipes faithful.json default.json [--markdown out.md]

Prints ESR-1 and PSR-1 of both with their differences, and whether the default is at most 2 points below.
Either side may be several reports of the same recipe with other `--seed`s, comma-separated: they are averaged
(two faithful runs with different seeds can differ by more than 2 points on their own).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

TOLERANCE = 2.0
OBJECT_METRICS = ("ESR-1", "PSR-1")
NEIGHBOUR_METRICS = ("ESR-1", "neighbour-PSR-1", "far-PSR-1")  # the neighbours task has no plain PSR-1


def metrics_of(report: dict) -> tuple[str, ...]:
    rows = [row for method, row in report["methods"].items() if method != "none"]
    return OBJECT_METRICS if all("PSR-1" in row for row in rows) else NEIGHBOUR_METRICS


def mean_report(reports: list[dict]) -> dict:
    """The per-method mean of every number the reports share (methods missing from one report are dropped)."""
    methods = set.intersection(*(set(r["methods"]) for r in reports))
    out = {}
    for method in methods:
        rows = [r["methods"][method] for r in reports]
        keys = [k for k, v in rows[0].items() if isinstance(v, (int, float)) and all(k in row for row in rows)]
        out[method] = {k: statistics.fmean(row[k] for row in rows) for k in keys}
    order = list(reports[0]["methods"])
    return {"methods": {m: out[m] for m in order if m in out}, "reports": len(reports)}


def compare(faithful: dict, default: dict) -> list[dict]:
    """Per method both reports ran: (faithful, default, difference) of each metric, and both runs' costs."""
    metrics = metrics_of(faithful)
    rows = []
    for method, ref in faithful["methods"].items():
        if method == "none" or method not in default["methods"]:
            continue
        ours = default["methods"][method]
        row = {"method": method, "metrics": {m: (ref[m], ours[m], ours[m] - ref[m]) for m in metrics}}
        row["unet_evals"] = (ref.get("unet_evals"), ours.get("unet_evals"))
        row["seconds"] = (ref.get("seconds"), ours.get("seconds"))
        rows.append(row)
    return rows


def within_tolerance(row: dict) -> bool:
    """ "Reaches within 2 points": at most 2 points below on every metric; better is fine."""
    return all(diff >= -TOLERANCE for _, _, diff in row["metrics"].values())


def markdown(rows: list[dict], labels: tuple[str, str] = ("faithful", "default")) -> str:
    a, b = labels
    metrics = list(rows[0]["metrics"]) if rows else list(OBJECT_METRICS)
    head = "".join(f" {m} {a} | {m} {b} | diff |" for m in metrics)
    lines = [
        f"| method |{head} within 2 points | UNet evals {a} / {b} | seconds {a} / {b} |",
        "|---" * (3 * len(metrics) + 4) + "|",
    ]
    for row in rows:
        evals = "/".join(f"{v:,.0f}" if v is not None else "?" for v in row["unet_evals"])
        seconds = "/".join(f"{v:.0f}" if v is not None else "?" for v in row["seconds"])
        cells = " | ".join(f"{x:.1f} | {y:.1f} | {d:+.1f}" for x, y, d in row["metrics"].values())
        ok = "yes" if within_tolerance(row) else "no"
        lines.append(f"| {row['method']} | {cells} | {ok} | {evals} | {seconds} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("faithful", help="report(s) of the faithful recipe, comma-separated")
    parser.add_argument("default", help="report(s) of the recipe compared with it, comma-separated")
    parser.add_argument("--markdown", help="also write the table here")
    parser.add_argument("--labels", default="faithful,default", help="column names of the two reports")
    args = parser.parse_args(argv)
    rows = compare(*(mean_report([_load(p) for p in side.split(",")]) for side in (args.faithful, args.default)))
    first, second = args.labels.split(",")
    table = markdown(rows, (first, second))
    print(table)
    if args.markdown:
        Path(args.markdown).write_text(table + "\n")
    return 0


def _load(path: str) -> dict:
    return json.loads(Path(path).read_text())


if __name__ == "__main__":
    raise SystemExit(main())
