"""Every result table of README.md and docs/, generated from the result files so that no figure is typed by hand.

    python -m benchmarks.tables          # rewrite every generated table
    python -m benchmarks.tables --check  # exit 1 if a table differs from its result files (a test runs this)

A generated table sits between `<!-- table:NAME -->` and `<!-- /table -->` in a markdown file; TABLES says which
result files make it and how: `Table` (rows and columns of benchmark reports), `Comparison` (a recipe against
another, `benchmarks/miniworld/compare_recipes.py`), `SpeedReports` (`python -m benchmarks.speed --show`),
`SpeedSummary` (a few rows of those), `ComfySpeed` (`benchmarks/comfyui_speed.py`), `CommandOutput` (the quick
start's output, `benchmarks/quickstart.sh`), `MiniworldTasks` (the first miniature world's task tables), `BatchCost`
(a batch's jobs, `benchmarks/batch_study.sh`) and `BatchScale` (a fleet's projected GPU time).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
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
    "name": "concept's name",
    "sweep": "sweep",
    "discrete": "discrete",
    "soft": "soft",
    "overall": "any attack",
    "audit overall": "audit's measure, any attack",
    "train_seconds": "training seconds",
    "attack_seconds": "attack seconds",
}


@dataclass(frozen=True)
class Table:
    """Rows from result files: `rows(files) -> [(label, row dict)]`, shown in `columns`."""

    doc: str  # markdown file under the repository root
    files: tuple[str, ...]  # result files under benchmarks/results
    columns: tuple[str, ...]
    rows: Callable[[list[dict[str, Any]]], list[tuple[str, dict[str, Any]]]]

    def render(self) -> str:
        reports = [json.loads((RESULTS / f).read_text()) for f in self.files]
        lines = [
            "| | " + " | ".join(COLUMNS[c] for c in self.columns) + " |",
            "|---" * (len(self.columns) + 1) + "|",
        ]
        for label, row in self.rows(reports):
            lines.append(f"| {label} | " + " | ".join(_cell(row.get(c)) for c in self.columns) + " |")
        return "\n".join(lines) + _source(self.files, reports)


def _source(files: Sequence[str], reports: Sequence[dict[str, Any]], folder: str = "benchmarks/results/") -> str:
    """The line under a table: which files it comes from, and the machines they ran on."""
    machines = sorted({r.get("machine", "?") for r in reports})
    sources = ", ".join(f"`{folder}{f}`" for f in files)
    return f"\n\nFrom {sources}; run on {', '.join(machines)}."


def _expand(spec: str) -> tuple[str, ...]:
    """Report paths from a short spec: space-separated, `R/` for benchmarks/results/, `M/` for the first world's
    results, one `{a,b}` alternative per path as in a shell ("R/x_seed{1,2}.json")."""
    out = []
    for item in spec.split():
        item = item.replace("R/", "benchmarks/results/", 1).replace("M/", "benchmarks/miniworld/results/", 1)
        head, brace, rest = item.partition("{")
        if not brace:
            out.append(item)
            continue
        choices, _, tail = rest.partition("}")
        out += [head + choice + tail for choice in choices.split(",")]
    return tuple(out)


def _braced(paths: Sequence[str]) -> list[str]:
    """Paths of one folder written once with their differing middles in braces (`_expand` in reverse), so that a
    table's source line stays short."""
    by_folder: dict[str, list[str]] = {}
    for path in paths:
        by_folder.setdefault(str(Path(path).parent), []).append(path)
    out = []
    for group in by_folder.values():
        if len(group) == 1:
            out += group
            continue
        head = os.path.commonprefix(group)
        tail = os.path.commonprefix([g[::-1] for g in group])[::-1]
        tail = tail[tail.find(".") :] if "." in tail else ""  # braces hold whole name parts, the extension outside
        head = head[: len(head) - len(head.split("_")[-1])] if not head.endswith(("_", "/")) else head
        middles = [g[len(head) : len(g) - len(tail)] for g in group]
        out.append(head + "{" + ",".join(middles) + "}" + tail)
    return out


@dataclass(frozen=True)
class Part:
    """Rows of one `compare_recipes` run: `faithful` against `default` (each averaged over its reports)."""

    faithful: tuple[str, ...]  # report paths under the repository root
    default: tuple[str, ...]
    methods: tuple[str, ...]  # the rows shown, in this order
    name: str | None = None  # the row's label in place of its method (a table of recipes)


def _part(faithful: str, default: str, methods: str, name: str | None = None) -> Part:
    return Part(_expand(faithful), _expand(default), tuple(methods.split(",")), name)


@dataclass(frozen=True)
class Comparison:
    """A recipe against another, as `compare_recipes` prints it; rows may come from several of its runs."""

    doc: str
    labels: tuple[str, str]
    parts: tuple[Part, ...]
    first: str = "method"  # the first column's heading

    def render(self) -> str:
        from .miniworld import compare_recipes

        rows, reports, files = [], [], []
        for part in self.parts:
            sides = []
            for paths in (part.faithful, part.default):
                loaded = [json.loads((ROOT / path).read_text()) for path in paths]
                reports += loaded
                files += [f for f in paths if f not in files]
                sides.append(compare_recipes.mean_report(loaded))
            found = {row["method"]: row for row in compare_recipes.compare(*sides)}
            rows += [{**found[m], "method": part.name or m} for m in part.methods]
        table = compare_recipes.markdown(rows, self.labels)
        if self.first != "method":
            table = table.replace("| method |", f"| {self.first} |", 1)
        return table + _source(_braced(files), reports, "")


def _compare(labels: str, *parts: Part, first: str = "method") -> Comparison:
    first_label, second_label = labels.split(",")
    return Comparison("docs/speed.md", (first_label, second_label), parts, first)


@dataclass(frozen=True)
class SpeedReports:
    """Speed reports as `python -m benchmarks.speed --show` prints them, in this order."""

    doc: str
    files: tuple[str, ...]  # under benchmarks/results

    def render(self) -> str:
        from .speed import reference_rows, show

        reports = [json.loads((RESULTS / f).read_text()) for f in self.files]
        references = reference_rows(reports)
        return "\n\n".join(show(report, references) for report in reports)


@dataclass(frozen=True)
class SpeedSummary:
    """A few rows of speed reports: (file, model, method) each, with the machine they ran on."""

    doc: str
    rows: tuple[tuple[str, str, str], ...]

    def render(self) -> str:
        from .speed import reference_rows, speedups

        files = tuple(dict.fromkeys(f for f, _, _ in self.rows))
        reports = {f: json.loads((RESULTS / f).read_text()) for f in files}
        references = reference_rows(list(reports.values()))
        lines = [
            "| model | method | machine | steps | projected s per concept | UNet evals per concept | speed-up |",
            "|---|---|---|---|---|---|---|",
        ]
        for f, model, method in self.rows:
            report = reports[f]
            row = report["models"][model]["methods"][method]
            ours = row["default"]
            reference = row.get("reference") or references.get((report["machine"], model, method))
            speedup = f"{speedups(reference, ours)[0]:.1f}x" if reference else "-"
            lines.append(
                f"| {model} | {method.upper()} | {report['machine']} | {ours['steps']} | "
                f"{_cell(float(ours['projected_s']))} | {_evals(ours)} | {speedup} |"
            )
        return "\n".join(lines) + _source(files, list(reports.values()))


def _evals(row: dict[str, Any]) -> str:
    evals = row.get("unet_evals_per_concept")
    return f"{evals:,.0f}" if evals else "-"


@dataclass(frozen=True)
class ComfySpeed:
    """The engine against itself inside ComfyUI (`benchmarks/comfyui_speed.py`), one row per report."""

    doc: str
    files: tuple[str, ...]  # under benchmarks/results

    def render(self) -> str:
        reports = [json.loads((RESULTS / f).read_text()) for f in self.files]
        lines = ["| method | engine (diffusers) s/step | inside ComfyUI s/step | ratio |", "|---|---|---|---|"]
        for r in reports:
            lines.append(
                f"| {r['settings']['method'].upper()} | {r['engine_s_per_step']:.3f} | "
                f"{r['comfyui_s_per_step']:.3f} | {r['comfyui_over_engine']:.2f} |"
            )
        return "\n".join(lines) + _source(self.files, reports)


@dataclass(frozen=True)
class CommandOutput:
    """What `python -m erasure_core erase` printed (its audit table and how training ended), from its `--report`."""

    doc: str
    file: str  # under benchmarks/results

    def render(self) -> str:
        from erasure_core.audit import AuditReport

        report = json.loads((RESULTS / self.file).read_text())
        table = AuditReport(report["audit"]["rows"]).table()
        return f"```\n{table}\n{report['stop_reason']}\n```" + _source((self.file,), [report])


@dataclass(frozen=True)
class MiniworldTasks:
    """The first miniature world's task tables (`benchmarks/miniworld/run_all.sh`), as `report.tables` writes them."""

    doc: str

    def render(self) -> str:
        from .miniworld.report import tables

        return tables().rstrip("\n")


@dataclass(frozen=True)
class BatchCost:
    """What each job of a batch cost, from the `summary.json` of runs of one job file (`benchmarks/batch_study.sh`),
    side by side."""

    doc: str
    files: tuple[tuple[str, str], ...]  # (column label, file under benchmarks/results)

    def render(self) -> str:
        runs = [(label, json.loads((RESULTS / f).read_text())) for label, f in self.files]
        labels = [label for label, _ in runs]
        lines = [
            "| job | method | erasure | " + " | ".join(f"seconds {label}" for label in labels) + " | UNet evals |",
            "|---" * (4 + len(labels)) + "|",
        ]
        first = runs[0][1]["jobs"]
        for i, job in enumerate(first):
            erasure = ", ".join(f"{c} {v:.2f}" for c, v in job["erasure"].items())
            seconds = " | ".join(f"{run['jobs'][i]['seconds']:.1f}" for _, run in runs)
            lines.append(f"| {job['job']} | {job['method'].upper()} | {erasure} | {seconds} | {job['unet_evals']:,} |")
        walls = " | ".join(f"**{run['seconds']:.1f}**" for _, run in runs)
        lines.append(f"| **whole batch** (wall) | | | {walls} | |")
        machines = sorted({j["machine"] for _, run in runs for j in run["jobs"]})
        sources = ", ".join(f"`benchmarks/results/{f}`" for _, f in self.files)
        return "\n".join(lines) + f"\n\nFrom {sources}; run on {', '.join(machines)}."


@dataclass(frozen=True)
class BatchScale:
    """A fleet's projected GPU time from the speed study's measured seconds per concept (SDXL, one GPU), against
    the same method's seconds with and without the latent pool on SD1.5 on that GPU."""

    doc: str
    concepts: int
    checkpoints: int
    gpus: tuple[int, ...]
    fresh: str  # the SDXL report (every latent sampled fresh)
    sd15_fresh: str
    sd15_pool: str

    def render(self) -> str:
        reports = {f: json.loads((RESULTS / f).read_text()) for f in (self.fresh, self.sd15_fresh, self.sd15_pool)}
        sdxl = reports[self.fresh]["models"]["sdxl"]["methods"]
        sd15 = reports[self.sd15_fresh]["models"]["sd15"]["methods"]
        pool = reports[self.sd15_pool]["models"]["sd15"]["methods"]
        lines = [
            f"| method | SDXL s per concept, measured | with the latent pool, estimated | "
            f"{self.concepts} concepts x {self.checkpoints} checkpoints, GPU-hours | "
            + " | ".join(f"hours on {n} GPUs" for n in self.gpus)
            + " |",
            "|---" * (4 + len(self.gpus)) + "|",
        ]
        for method, rows in sdxl.items():
            measured = rows["default"]["projected_s"]
            if method == "uce":  # one closed-form solve per checkpoint for the whole concept set
                per, estimate, jobs = measured, measured, self.checkpoints
                label = "UCE (one solve per checkpoint)"
            else:
                ratio = pool[method]["default"]["projected_s"] / sd15[method]["default"]["projected_s"]
                per, estimate, jobs = measured, measured * ratio, self.checkpoints * self.concepts
                label = method.upper()
            hours = [jobs * per / 3600, jobs * estimate / 3600]

            def both(h: list[float], n: int = 1) -> str:
                cells = [f"{v / n:,.0f}" if v / n >= 10 else f"{v / n:.1f}" for v in h]
                return cells[0] if h[0] == h[1] else " / ".join(cells)

            lines.append(
                f"| {label} | {per:,.0f} | {estimate:,.0f} | {both(hours)} | "
                + " | ".join(both(hours, n) for n in self.gpus)
                + " |"
            )
        return "\n".join(lines) + _source(tuple(reports), list(reports.values()))


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
    from .miniworld.transfer import VARIANTS, check_cell

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


def _attacks(reports: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """The attack task: one row per world and method (the unedited model first), robust runs marked."""
    out = []
    for report in reports:
        robust = ", robust" if report["settings"]["overrides"].get("robust") else ""
        for method, row in report["tasks"]["attack"]["methods"].items():
            name = "unedited" if method == "none" else method.upper() + robust
            out.append((f"{report['world']} world, {name}", row))
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
TABLES: dict[
    str,
    Table
    | Comparison
    | SpeedReports
    | SpeedSummary
    | ComfySpeed
    | CommandOutput
    | MiniworldTasks
    | BatchCost
    | BatchScale,
] = {
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
    "pool-1": _compare(
        "seed-0,seed-1", _part("M/objects.json", "R/miniworld_objects_faithful_seed1.json", "esd,eap,age")
    ),
    "pool-2": _compare(
        "faithful,pool-2x4",
        _part(
            "M/neighbours.json R/miniworld_neighbours_seed{1,2,3}.json",
            "R/miniworld_neighbours_pool_2x4{,_seed1,_seed2,_seed3}.json",
            "eap,age",
        ),
    ),
    "pool-3": _compare(
        "faithful,pool-2x4",
        _part(
            "M/neighbours.json R/miniworld_neighbours_esd_seed{1,2}.json",
            "R/miniworld_neighbours_{pool_2x4,esd_pool_2x4_seed1,esd_pool_2x4_seed2}.json",
            "esd",
        ),
    ),
    "pool-4": _compare(
        "faithful,pool-2x4-f0",
        _part(
            "M/neighbours.json R/miniworld_neighbours_esd_seed{1,2}.json",
            "R/miniworld_neighbours_esd_pool_2x4_f0_seed{0,1,2}.json",
            "esd",
        ),
    ),
    "pool-5": _compare(
        "faithful,pool-2x4-f0", _part("M/styles.json", "R/miniworld_styles_esd_pool_2x4_f0.json", "esd")
    ),
    "pool-6": _compare(
        "faithful,pool-2x4-f0",
        _part("R/miniworld_objects_1000steps.json", "R/miniworld_objects_1000steps_esd_pool_2x4_f0.json", "esd"),
    ),
    "pool-7": _compare(
        "faithful,pool-2x4-f0",
        _part(
            "M/neighbours.json R/miniworld_neighbours_seed{1,2,3}.json",
            "R/miniworld_neighbours_eap_pool_2x4_f0_seed{0,1,2,3}.json",
            "eap",
        ),
    ),
    "pool-8": _compare(
        "faithful,pool-2x4-f0",
        _part(
            "R/miniworld_objects_1000steps_eap{,_seed1}.json",
            "R/miniworld_objects_1000steps_eap_pool_2x4_f0_seed{0,1}.json",
            "eap",
        ),
    ),
    "pool-9": _compare(
        "faithful,search-only",
        _part(
            "M/neighbours.json R/miniworld_neighbours_seed{1,2,3}.json",
            "R/miniworld_neighbours_age_pool_search_only_seed{0,1,2,3}.json",
            "age",
        ),
    ),
    "pool-10": _compare(
        "faithful,pool-2x4-c8",
        _part(
            "M/neighbours.json R/miniworld_neighbours_seed{1,2,3}.json",
            "R/miniworld_neighbours_age_pool_2x4_c8{,_seed1,_seed2,_seed3}.json",
            "age",
        ),
    ),
    "pool-11": _compare(
        "faithful,pool-8x4",
        _part(
            "M/neighbours.json R/miniworld_neighbours_seed1.json",
            "R/miniworld_neighbours_age_pool_8x4_seed{0,1}.json",
            "age",
        ),
    ),
    "pool-12": _compare(
        "faithful,pool-2x4", _part("M/styles.json", "R/miniworld_styles_pool_2x4.json", "esd,eap,age")
    ),
    "pool-13": _compare(
        "faithful,pool-2x4", _part("M/implicit.json", "R/miniworld_implicit_pool_2x4.json", "esd,eap,age")
    ),
    "pool-14": _compare(
        "faithful-3-seeds,pool-2x4-3-seeds",
        _part(
            "M/objects.json R/miniworld_objects_{faithful_seed1,esd_seed2}.json",
            "R/miniworld_objects_{pool_2x4,esd_pool_2x4_seed1,esd_pool_2x4_seed2}.json",
            "esd",
        ),
    ),
    "pool-15": _compare(
        "faithful,pool-2x4",
        _part(
            "M/objects.json R/miniworld_objects_faithful_seed1.json",
            "R/miniworld_objects_pool_2x4{,_eap_age_seed1}.json",
            "eap,age",
        ),
    ),
    "pool-16": _compare(
        "faithful,pool-4x8", _part("M/objects.json", "R/miniworld_objects_pool_4x8.json", "esd,eap,age")
    ),
    "pool-17": _compare(
        "faithful,original-pool", _part("M/objects.json", "R/miniworld_objects_original_pool.json", "esd,eap,age")
    ),
    "pool-18": _compare(
        "faithful,pool-2x4",
        _part("R/miniworld_objects_1000steps.json", "R/miniworld_objects_1000steps_pool_2x4.json", "esd"),
    ),
    "pool-19": _compare(
        "faithful,pool-2x4",
        _part(
            "R/miniworld_objects_1000steps_eap{,_seed1}.json",
            "R/miniworld_objects_1000steps_eap_pool_2x4{,_seed1}.json",
            "eap",
        ),
    ),
    "steps-1": _compare(
        "faithful-1000,esd-400",
        _part("R/miniworld_objects_1000steps{,_seed1}.json", "R/miniworld_objects_400steps_esd{,_seed1}.json", "esd"),
    ),
    "steps-2": _compare(
        "faithful-1000,esd-400",
        _part(
            "R/miniworld_neighbours_1000steps_esd{,_seed1}.json",
            "R/miniworld_neighbours_400steps_esd{,_seed1}.json",
            "esd",
        ),
    ),
    "ddim-1": _compare(
        "faithful,ddim25",
        _part(
            "M/neighbours.json R/miniworld_neighbours_seed{1,2,3}.json",
            "R/miniworld_neighbours_age_ddim25_seed{0,1,2,3}.json",
            "age",
        ),
    ),
    "ddim-2": _compare(
        "default-50,ddim25",
        _part(
            "R/miniworld_neighbours_age_pool_search_only_seed{0,1,2,3}.json",
            "R/miniworld_neighbours_age_ddim25_seed{0,1,2,3}.json",
            "age",
        ),
    ),
    "ddim-3": _compare(
        "faithful,ddim25",
        _part(
            "M/objects.json R/miniworld_objects_faithful_seed1.json",
            "R/miniworld_objects_age_ddim25{,_seed1}.json",
            "age",
        ),
    ),
    "ddim-4": _compare(
        "faithful-1000,ddim25-500",
        _part("R/miniworld_neighbours_1000steps_age.json", "R/miniworld_neighbours_500steps_age_ddim25.json", "age"),
    ),
    "ddim-5": _compare(
        "faithful-1000,ddim25-500",
        _part(
            "R/miniworld_objects_1000steps_age.json", "R/miniworld_objects_500steps_age_ddim25{,_seed1}.json", "age"
        ),
    ),
    "ddim-6": _compare(
        "default-50-500,ddim25-500",
        _part(
            "R/miniworld_objects_500steps_age{,_seed1}.json",
            "R/miniworld_objects_500steps_age_ddim25{,_seed1}.json",
            "age",
        ),
    ),
    "ddim-7": _compare(
        "faithful,ddim25",
        _part(
            "M/neighbours.json R/miniworld_neighbours_esd_seed{1,2,3,4}.json",
            "R/miniworld_neighbours_esd_ddim25_seed{0,1,2,3,4}.json",
            "esd",
        ),
    ),
    "ddim-8": _compare(
        "default-50,ddim25",
        _part(
            "R/miniworld_neighbours_esd_pool_2x4_f0_seed{0,1,2,3}.json",
            "R/miniworld_neighbours_esd_ddim25_seed{0,1,2,3}.json",
            "esd",
        ),
    ),
    "ddim-9": _compare(
        "faithful,ddim25",
        _part(
            "M/objects.json R/miniworld_objects_{faithful_seed1,esd_seed2}.json",
            "R/miniworld_objects_esd_ddim25{,_seed1,_seed2}.json",
            "esd",
        ),
    ),
    "ddim-10": _compare(
        "faithful-1000,ddim25-500",
        _part(
            "R/miniworld_objects_1000steps{,_seed1}.json",
            "R/miniworld_objects_500steps_esd_ddim25{,_seed1}.json",
            "esd",
        ),
    ),
    "ddim-11": _compare(
        "default-500,ddim25-500",
        _part(
            "R/miniworld_objects_500steps_esd{,_seed1}.json",
            "R/miniworld_objects_500steps_esd_ddim25{,_seed1}.json",
            "esd",
        ),
    ),
    "ddim-12": _compare(
        "faithful-1000,ddim25-500",
        _part(
            "R/miniworld_neighbours_1000steps_esd{,_seed1,_seed2,_seed3,_seed4}.json",
            "R/miniworld_neighbours_500steps_esd_ddim25_seed{0,1,2,3,4}.json",
            "esd",
        ),
    ),
    "ddim-13": _compare(
        "default-500,ddim25-500",
        _part(
            "R/miniworld_neighbours_500steps{,_esd_seed1,_esd_seed2,_esd_seed3}.json",
            "R/miniworld_neighbours_500steps_esd_ddim25_seed{0,1,2,3}.json",
            "esd",
        ),
    ),
    "ddim-14": _compare(
        "faithful-1000,default-500",
        _part(
            "R/miniworld_neighbours_1000steps_esd{,_seed1,_seed2,_seed3}.json",
            "R/miniworld_neighbours_500steps{,_esd_seed1,_esd_seed2,_esd_seed3}.json",
            "esd",
        ),
    ),
    "ddim-15": _compare(
        "fresh11-500,fresh6-500",
        _part(
            "R/miniworld_neighbours_500steps_age_ddim25{,_seed1}.json",
            "R/miniworld_neighbours_500steps_age_fresh5{,_seed1}.json",
            "age",
        ),
    ),
    "ddim-16": _compare(
        "faithful-1000,fresh6-500",
        _part("R/miniworld_neighbours_1000steps_age.json", "R/miniworld_neighbours_500steps_age_fresh5.json", "age"),
    ),
    "steps-3": _compare(
        "faithful-1000,default-500",
        _part("R/miniworld_objects_1000steps{,_seed1}.json", "R/miniworld_objects_500steps_esd{,_seed1}.json", "esd"),
        _part(
            "R/miniworld_objects_1000steps_eap{,_seed1}.json", "R/miniworld_objects_500steps_eap{,_seed1}.json", "eap"
        ),
        _part("R/miniworld_objects_1000steps_age.json", "R/miniworld_objects_500steps_age.json", "age"),
    ),
    "steps-4": _compare(
        "faithful-1000,default-250",
        _part("R/miniworld_objects_1000steps{,_seed1}.json", "R/miniworld_objects_250steps_esd.json", "esd"),
        _part("R/miniworld_objects_1000steps_eap{,_seed1}.json", "R/miniworld_objects_250steps_eap.json", "eap"),
    ),
    "steps-5": _compare(
        "faithful-1000,default-500",
        _part("R/miniworld_neighbours_1000steps_esd.json", "R/miniworld_neighbours_500steps.json", "esd"),
        _part("R/miniworld_neighbours_1000steps_eap.json", "R/miniworld_neighbours_500steps.json", "eap"),
        _part("R/miniworld_neighbours_1000steps_age.json", "R/miniworld_neighbours_500steps_age.json", "age"),
    ),
    "steps-age-recipes": _compare(
        "faithful-1000,recipe",
        *(
            _part(
                "R/miniworld_objects_1000steps_age.json", f"R/miniworld_objects_500steps_age{suffix}.json", "age", name
            )
            for name, suffix in (
                ("default (search-only)", ""),
                ("joint", "_joint"),
                ("pool2x4", "_pool2x4"),
                ("joint-pool2x4", "_joint_pool2x4"),
                ("joint-pool2x16-f0", "_joint_pool2x16_f0"),
            )
        ),
        first="recipe",
    ),
    "speed-reports": SpeedReports(
        "docs/speed.md",
        (
            "speed_sd15_h100.json",
            "speed_sd15_pool_h100.json",
            "speed_sdxl_h100.json",
            "speed_cpu.json",
            "speed_cpu_esd_rerun.json",
            "speed_cpu_miniworld.json",
            "speed_cpu_age.json",
            "speed_cpu_miniworld_age.json",
            "speed_cpu_esd.json",
            "speed_cpu_age_fresh5.json",
        ),
    ),
    "miniworld-tasks": MiniworldTasks("docs/miniworld.md"),
    "comfyui-speed": ComfySpeed("docs/hosts.md", ("comfyui_speed_cpu_esd.json", "comfyui_speed_cpu_eap.json")),
    "attack": Table(
        "docs/attack.md",
        ("attack/objects_one_concept.json", "attack/icons_one_concept.json"),
        ("name", "sweep", "discrete", "soft", "overall", "audit overall", "PSR-1", "attack_seconds"),
        _attacks,
    ),
    "attack-robust": Table(
        "docs/attack.md",
        tuple(f"attack/{w}_one_concept{r}.json" for w in ("objects", "icons") for r in ("", "_robust")),
        ("name", "sweep", "discrete", "soft", "overall", "PSR-1", "train_seconds", "unet_evals"),
        lambda reports: [(label, row) for label, row in _attacks(reports) if ", ESD" in label or ", EAP" in label],
    ),
    "readme-quick-start": CommandOutput("README.md", "quickstart/no-apple.json"),
    "readme-quality": Table(
        "README.md",
        ("worlds/icons_neighbours.json", "worlds/icons_neighbours_eap_age.json", "worlds/icons_neighbours_age.json"),
        ONE_CONCEPT,
        _methods,
    ),
    "batch-cost": BatchCost(
        "docs/batch.md", (("here", "batch/example_here.json"), ("on Ray (2 CPUs)", "batch/example_ray.json"))
    ),
    "batch-scale": BatchScale(
        "docs/batch.md",
        concepts=50,
        checkpoints=200,
        gpus=(8, 64),
        fresh="speed_sdxl_h100.json",
        sd15_fresh="speed_sd15_h100.json",
        sd15_pool="speed_sd15_pool_h100.json",
    ),
    "readme-speed": SpeedSummary(
        "README.md",
        (
            ("speed_cpu_esd.json", "small", "esd"),
            ("speed_cpu.json", "small", "eap"),
            ("speed_cpu_age_fresh5.json", "small", "age"),
            ("speed_cpu.json", "small", "uce"),
            ("speed_sd15_pool_h100.json", "sd15", "esd"),
            ("speed_sd15_pool_h100.json", "sd15", "eap"),
            ("speed_sd15_pool_h100.json", "sd15", "age"),
            ("speed_sd15_h100.json", "sd15", "uce"),
        ),
    ),
}


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.0f}" if abs(value) >= 100 else f"{value:.1f}"
    return str(value)


def render(name: str) -> str:
    """The markdown of table `name`, with the files and machines its figures come from."""
    return TABLES[name].render()


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
