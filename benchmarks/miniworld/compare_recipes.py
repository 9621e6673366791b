"""Quality of the default recipe against the faithful one on the miniature world, from two `evaluate` reports.

    python -m benchmarks.miniworld.evaluate --task objects --methods none,esd,eap,age \\
        --set '{"pool_refreshes": 0}' --json faithful.json          # fresh partial sampling at every step
    python -m benchmarks.miniworld.evaluate --task objects --methods none,esd,eap,age --json default.json
    python -m benchmarks.miniworld.compare_recipes faithful.json default.json [--markdown out.md]

Prints ESR-1 and PSR-1 of both with their differences, and whether the default is at most 2 points below.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

TOLERANCE = 2.0
METRICS = ("ESR-1", "PSR-1")


def compare(faithful: dict, default: dict) -> list[dict]:
    rows = []
    for method, ref in faithful["methods"].items():
        if method == "none" or method not in default["methods"]:
            continue
        ours = default["methods"][method]
        row = {"method": method}
        for metric in METRICS:
            row[metric] = (ref[metric], ours[metric], ours[metric] - ref[metric])
        row["unet_evals"] = (ref.get("unet_evals"), ours.get("unet_evals"))
        row["seconds"] = (ref.get("seconds"), ours.get("seconds"))
        rows.append(row)
    return rows


def markdown(rows: list[dict], labels: tuple[str, str] = ("faithful", "default")) -> str:
    a, b = labels
    lines = [
        f"| method | ESR-1 {a} | ESR-1 {b} | diff | PSR-1 {a} | PSR-1 {b} | diff | within 2 points "
        f"| UNet evals {a} / {b} | seconds {a} / {b} |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        ok = all(row[m][2] >= -TOLERANCE for m in METRICS)  # "reaches within 2 points": better is fine
        evals = "/".join(f"{v:,.0f}" if v is not None else "?" for v in row["unet_evals"])
        seconds = "/".join(f"{v:.0f}" if v is not None else "?" for v in row["seconds"])
        cells = [f"{row[m][0]:.1f} | {row[m][1]:.1f} | {row[m][2]:+.1f}" for m in METRICS]
        lines.append(f"| {row['method']} | {' | '.join(cells)} | {'yes' if ok else 'no'} | {evals} | {seconds} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("faithful")
    parser.add_argument("default")
    parser.add_argument("--markdown", help="also write the table here")
    parser.add_argument("--labels", default="faithful,default", help="column names of the two reports")
    args = parser.parse_args(argv)
    rows = compare(json.loads(Path(args.faithful).read_text()), json.loads(Path(args.default).read_text()))
    first, second = args.labels.split(",")
    table = markdown(rows, (first, second))
    print(table)
    if args.markdown:
        Path(args.markdown).write_text(table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
