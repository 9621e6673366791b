"""The docs' result tables, generated from the result files so that no figure is typed by hand.

    python -m benchmarks.miniworld.tables          # rewrite every generated table in docs/
    python -m benchmarks.miniworld.tables --check  # exit 1 if a table differs from its result files

A generated table sits between `<!-- table:NAME -->` and `<!-- /table -->` in a markdown file; TABLES says which
result files and columns make it.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
COLUMNS = {
    "ESR-1": "erased (ESR-1)",
    "synonym-leak": "synonym still drawn",
    "nearest-PSR-1": "nearest kept (PSR-1)",
    "neighbour-PSR-1": "rest of group kept",
    "far-PSR-1": "other groups kept",
    "PSR-1": "kept (PSR-1)",
    "least-erased": "least erased concept (ESR-1)",
    "steps_trained": "steps",
    "check": "target check",
    "unet_evals": "UNet evals",
    "seconds": "seconds",
}


@dataclass(frozen=True)
class Table:
    """Rows from result files: `rows(files) -> [(label, row dict)]`, shown in `columns`."""

    doc: str  # markdown file under the repository root
    files: tuple[str, ...]  # result files under benchmarks/results
    columns: tuple[str, ...]
    rows: Callable[[list[dict[str, Any]]], list[tuple[str, dict[str, Any]]]]


def _methods(reports: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """Every method of the reports, the unedited model first; a method in a later report replaces an earlier one's
    (the defaults' run of some methods beside another run of the rest)."""
    methods = {m: row for report in reports for m, row in report["methods"].items()}
    order = sorted(methods, key=lambda m: (m != "none", m))
    return [("unedited" if m == "none" else m.upper(), methods[m]) for m in order]


def _by_setting(
    name: str, methods: tuple[str, ...] | None = None
) -> Callable[[list[dict[str, Any]]], list[tuple[str, dict[str, Any]]]]:
    """One row per report (and method: all, or `methods`), labelled with the value of the engine setting `name` it
    was run with ("default" where the report left it at its default)."""

    def rows(reports: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
        out = [("unedited", reports[0]["methods"]["none"])] if "none" in reports[0]["methods"] else []
        for report in reports:
            value = report["settings"]["overrides"].get(name, "default")
            for method, row in report["methods"].items():
                if method != "none" and (methods is None or method in methods):
                    out.append((f"{method.upper()}, {name} {value}", row))
        return out

    return rows


def _by_count(reports: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """One row per method and number of erased concepts, with the least erased concept beside the mean."""
    out = []
    for report in sorted(reports, key=lambda r: len(r["tasks"]["objects"]["splits"][0][0])):
        n = len(report["tasks"]["objects"]["splits"][0][0])
        for method, row in report["methods"].items():
            label = "unedited" if method == "none" else method.upper()
            out.append((f"{label}, {n} erased", {**row, "least-erased": min(row["ESR-1 each"].values())}))
    return out


def _transfer(reports: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """The transfer task: per descendant seed, the unedited models, then each method on the base and, on every
    descendant, its LoRA transferred, trained there directly, and topped up there (with the target check's say)."""
    from .transfer import VARIANTS, check_cell

    out = []
    for report in reports:
        task = report["tasks"]["transfer"]
        seed = task["descendant_settings"]["seed"]
        for model, row in task["unedited"].items():
            out.append((f"seed {seed}: {model}, unedited", row))
        for method, entry in task["methods"].items():
            base = {**entry["base"], "steps_trained": int(entry["base"]["cost"]["steps_trained"])}
            out.append((f"seed {seed}: base, {method.upper()}", base | {"check": check_cell(entry, None)}))
            for kind in task["descendants"]:
                for variant in (v for v in VARIANTS if v in entry[kind]):
                    row = dict(entry[kind][variant])
                    row["steps_trained"] = int(row["cost"]["steps_trained"]) if "cost" in row else None
                    if variant == "transferred":
                        row["check"] = check_cell(entry, kind)
                    out.append((f"seed {seed}: {kind}, {method.upper()} {variant}", row))
    return out


def _labelled(
    *labels: str, methods: tuple[str, ...] | None = None
) -> Callable[[list[dict[str, Any]]], list[tuple[str, dict[str, Any]]]]:
    """One row per report, labelled in the order of the table's files, for every method the report ran (or only
    `methods`); the method is named where a report has several."""

    def rows(reports: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
        out = []
        for label, report in zip(labels, reports, strict=True):
            shown = {m: r for m, r in report["methods"].items() if methods is None or m in methods}
            out += [(label if len(shown) == 1 else f"{label}, {m.upper()}", r) for m, r in shown.items()]
        return out

    return rows


NOT_RUN = "Not run yet."  # the body of a table whose study has no results yet

ONE_CONCEPT = ("ESR-1", "synonym-leak", "nearest-PSR-1", "neighbour-PSR-1", "far-PSR-1", "steps_trained", "seconds")
FIVE_CONCEPTS = ("ESR-1", "PSR-1", "neighbour-PSR-1", "far-PSR-1", "steps_trained", "seconds")
TABLES: dict[str, Table] = {
    "stopping-choice": Table(
        "docs/worlds.md",
        tuple(f"stopping/choose_objects_esd_erased_at_{at}.json" for at in ("0.6", "0.7", "0.8")),
        ONE_CONCEPT,
        _by_setting("erased_at"),
    ),
    "preserve-choice": Table(
        "docs/worlds.md",
        tuple(f"preserve/choose_objects_{m}_pool_candidates_{n}.json" for m in ("eap", "age") for n in (0, 8)),
        ONE_CONCEPT,
        _by_setting("pool_candidates"),
    ),
    "guard-choice": Table(
        "docs/worlds.md",
        (
            "stopping/choose_objects_esd_erased_at_0.7.json",
            "guard/choose_objects_esd_guard_neighbours_4.json",
        ),
        ONE_CONCEPT,
        _by_setting("guard_neighbours"),
    ),
    "uce-choice": Table(
        "docs/worlds.md",
        tuple(f"uce/choose_objects_uce_tokens_{t}.json" for t in ("subject", "tail", "all")),
        ONE_CONCEPT,
        _by_setting("tokens"),
    ),
    "uce-templates": Table(
        "docs/worlds.md",
        ("uce/choose_objects_uce_tokens_subject.json", "uce/choose_objects_uce_templates_5.json"),
        ONE_CONCEPT,
        _by_setting("templates"),
    ),
    "age-target": Table(
        "docs/worlds.md",
        (
            "preserve/choose_objects_age_pool_candidates_0.json",
            "preserve/choose_objects_age_drawn_target.json",
            "worlds/icons_neighbours_eap_age.json",
            "worlds/icons_neighbours_age.json",
        ),
        ONE_CONCEPT,
        _labelled(
            "objects world, top 5 renormalised (before)",
            "objects world, 16 drawn (now)",
            "icons world, top 5 renormalised (before)",
            "icons world, 16 drawn (now)",
            methods=("age",),
        ),
    ),
    "icons-one-concept": Table(
        "docs/worlds.md",
        ("worlds/icons_neighbours.json", "worlds/icons_neighbours_eap_age.json", "worlds/icons_neighbours_age.json"),
        ONE_CONCEPT,
        _methods,
    ),
    "icons-preserve": Table(
        "docs/worlds.md",
        ("worlds/icons_neighbours_eap_age.json", "worlds/icons_neighbours.json"),
        ONE_CONCEPT,
        _by_setting("pool_candidates", ("eap", "age")),
    ),
    "icons-guard": Table(
        "docs/worlds.md",
        ("worlds/icons_neighbours.json", "worlds/icons_neighbours_esd_guard_neighbours_4.json"),
        ONE_CONCEPT,
        _by_setting("guard_neighbours", ("esd",)),
    ),
    "icons-uce-templates": Table(
        "docs/worlds.md",
        ("worlds/icons_neighbours.json", "worlds/icons_neighbours_uce_templates_5.json"),
        ONE_CONCEPT,
        _by_setting("templates", ("uce",)),
    ),
    "icons-five-concepts": Table(
        "docs/worlds.md", ("worlds/icons_objects.json", "worlds/icons_objects_eap_age.json"), FIVE_CONCEPTS, _methods
    ),
    "icons-five-preserve": Table(
        "docs/worlds.md",
        ("worlds/icons_objects_eap_age.json", "worlds/icons_objects.json"),
        FIVE_CONCEPTS,
        _by_setting("pool_candidates", ("eap", "age")),
    ),
    "icons-one-concept-previous": Table(
        "docs/worlds.md", ("worlds/previous/icons_neighbours_2026-12-02.json",), ONE_CONCEPT, _methods
    ),
    "icons-five-concepts-previous": Table(
        "docs/worlds.md", ("worlds/previous/icons_objects_2026-12-02.json",), FIVE_CONCEPTS, _methods
    ),
    "esd-u-layers": Table(
        "docs/worlds.md",
        tuple(
            f"esd_u/{world}_implicit{steps}{variant}.json"
            for world in ("objects", "icons")
            for steps in ("", "_100_steps")
            for variant in ("", "_without_resblock_time")
        ),
        ("ESR-1", "PSR-1", "steps_trained", "unet_evals", "seconds"),
        _labelled(
            *(
                f"{world}, {steps}, {variant}"
                for world in ("objects world (night)", "icons world (underwater)")
                for steps in ("defaults", "100 steps")
                for variant in ("ESD-u (now)", "ResBlock time projections left out (before)")
            )
        ),
    ),
    "icons-many-concepts": Table(
        "docs/worlds.md",
        tuple(f"many/icons_erase_{n}.json" for n in (1, 10, 20)),
        ("ESR-1", "least-erased", "neighbour-PSR-1", "far-PSR-1", "steps_trained", "unet_evals", "seconds"),
        _by_count,
    ),
    "transfer": Table(
        "docs/transfer.md",
        ("transfer/objects_seed0.json", "transfer/objects_seed1.json"),
        ("ESR-1", "PSR-1", "neighbour-PSR-1", "steps_trained", "check"),
        _transfer,
    ),
}


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.0f}" if abs(value) >= 100 else f"{value:.1f}"
    return str(value)


def render(name: str) -> str:
    """The markdown of table `name`, with the machine its results ran on."""
    table = TABLES[name]
    reports = [json.loads((RESULTS / f).read_text()) for f in table.files]
    lines = [
        "| | " + " | ".join(COLUMNS[c] for c in table.columns) + " |",
        "|---" * (len(table.columns) + 1) + "|",
    ]
    for label, row in table.rows(reports):
        lines.append(f"| {label} | " + " | ".join(_cell(row.get(c)) for c in table.columns) + " |")
    machines = sorted({r.get("machine", "?") for r in reports})
    sources = ", ".join(f"`benchmarks/results/{f}`" for f in table.files)
    lines += ["", f"From {sources}; run on {', '.join(machines)}."]
    return "\n".join(lines)


def _pattern(name: str) -> re.Pattern[str]:
    """The block of table `name`; its body never reaches into another block, even when it is empty."""
    return re.compile(rf"(<!-- table:{re.escape(name)} -->\n)((?:(?!<!-- /?table).)*?)\n?(<!-- /table -->)", re.DOTALL)


def update(check: bool = False) -> list[str]:
    """Rewrite (or with `check`, compare) every generated table; returns the names of those that differed."""
    stale = []
    for name, table in TABLES.items():
        path = ROOT / table.doc
        text = path.read_text()
        match = _pattern(name).search(text)
        if match is None:
            raise SystemExit(f"{table.doc} has no <!-- table:{name} --> ... <!-- /table --> block")
        try:
            fresh = render(name)
        except FileNotFoundError as exc:  # a study not run yet: its block must say so, and nothing else
            print(f"{name}: no results yet ({exc.filename}); run its script")
            if match.group(2).strip() != NOT_RUN:
                stale.append(name)
                if not check:
                    text = text[: match.start(2)] + NOT_RUN + "\n" + text[match.start(3) :]
                    path.write_text(text)
            continue
        if match.group(2) != fresh:
            stale.append(name)
            if not check:
                text = text[: match.start(2)] + fresh + "\n" + text[match.start(3) :]
                path.write_text(text)
    return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report tables that differ from their results")
    args = parser.parse_args(argv)
    stale = update(check=args.check)
    if stale:
        print(("differs from its results: " if args.check else "rewritten: ") + ", ".join(stale))
    return 1 if stale and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
