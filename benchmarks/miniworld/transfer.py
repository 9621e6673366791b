"""The transfer task: erase on the base, apply the LoRA to community-like descendants, and compare (issue 24.1).

    python -m benchmarks.miniworld.evaluate --task transfer [--descendant-seed 1] [--kinds style,merge,...]

For each method and each descendant (`descend.py` makes it the first time it is needed):

- **transferred**: the LoRA trained on the base, applied to the descendant as it is;
- **direct**: the same erasure trained on the descendant itself, the figure transfer is held to;
- **topped up**: training on the descendant resumed from the base's LoRA file, as the hosts' `resume` does; with
  the stopping rule it stops as soon as every erased concept is erased there (0 steps where the LoRA already holds);
- **check**: what the target check (Load Erasure LoRA's `check`, the A1111 check, `audit`) says about the
  transferred LoRA on the descendant: held or not, with each erased concept's erasure score.

ESR-1/PSR-1 as in the objects task (one 5/5 split), neighbour-PSR-1 over the other concepts of the erased concepts'
groups; the unedited descendant's own rates are reported beside them.
"""

from __future__ import annotations

import statistics
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from erasure_core import export_lora, load_lora, run_audit
from erasure_core.defaults import DEFAULTS
from erasure_core.demo import load_demo
from erasure_core.frontend.verdict import check_settings, not_held, transfer_verdict
from erasure_core.lora.adapter import LoraWeights

from .descend import KINDS, DescendSettings, make_descendant
from .evaluate import Bench, _object_images, _rate, run_cost

VARIANTS = ("transferred", "direct", "topped up")


@contextmanager
def on_model(bench: Bench, folder: Path) -> Iterator[None]:
    """Train and generate with the model in `folder` (the world's classifier still judges)."""
    saved = bench.demo
    bench.demo = load_demo(bench.device, folder)
    try:
        yield
    finally:
        bench.demo = saved


def rates(bench: Bench, erased: Sequence[str], kept: Sequence[str], lora: LoraWeights | None) -> dict[str, Any]:
    """ESR-1, PSR-1 and the erased groups' other concepts (neighbour-PSR-1) on the bench's current model."""
    group_of = bench.world.group_of
    others = [o for o in bench.world.objects if o not in (*erased, *kept)]
    near = [o for o in others if group_of[o] in {group_of[e] for e in erased}]
    images, per_concept, _ = _object_images(bench, [*erased, *kept, *others], lora)
    row = {
        "ESR-1": _rate(bench, per_concept, erased, 1, hit=False),
        "PSR-1": _rate(bench, per_concept, kept, 1) if kept else float("nan"),
        "neighbour-PSR-1": _rate(bench, per_concept, near, 1),
        "ESR-1 each": {c: _rate(bench, per_concept, [c], 1, hit=False) for c in erased},
    }
    return {"row": row, "shown": images[:: bench.images_per_concept][: len(erased) + len(kept)]}


def _check(bench: Bench, lora_path: Path, made_on: dict[str, float] | None = None) -> dict[str, Any]:
    """The hosts' target check of the LoRA file on the bench's current model, at strength 1. `made_on`: the same
    check's scores on the base (what a LoRA's final audit gives the hosts; the benchmark's runs have none)."""
    config, lora = check_settings(load_lora(lora_path), 1.0)
    report = run_audit(bench.demo.backend, lora, config)
    held, verdict = transfer_verdict(report, config.erased_at, reference=made_on)
    scores = {r["prompt"]: r["erasure"] for r in report.rows if r["role"] == "erased"}
    drift = {r["prompt"]: r["drift"] for r in report.rows if r["role"] != "erased"}
    return {"held": held, "erasure": scores, "drift": drift, "verdict": verdict}


def task_transfer(
    bench: Bench, erased: Sequence[str], kept: Sequence[str], kinds: Sequence[str], descendants: DescendSettings
) -> dict[str, Any]:
    folders = {kind: make_descendant(bench.world, kind, descendants, bench.device) for kind in kinds}
    unedited = {"base": rates(bench, erased, kept, None)}
    for kind, folder in folders.items():
        with on_model(bench, folder):
            unedited[kind] = rates(bench, erased, kept, None)
    methods: dict[str, Any] = {}
    grid_rows = [("base", unedited["base"]["shown"])]
    tmp = Path(tempfile.mkdtemp(prefix="erasure-transfer-"))
    for method in [m for m in bench.methods if m != "none"]:
        result = bench.run(method, erased, kept)
        lora, cost = result.weights, run_cost(result)
        lora_path = export_lora(result, tmp / f"{method}.safetensors")  # as users share it (fp16)
        base = rates(bench, erased, kept, lora)
        on_base = _check(bench, lora_path)
        entry: dict[str, Any] = {"base": base["row"] | {"cost": cost}, "check on base": on_base}
        first = not methods
        if first:
            grid_rows.append((f"{method} base", base["shown"]))
        for kind, folder in folders.items():
            with on_model(bench, folder):
                row: dict[str, Any] = {"transferred": rates(bench, erased, kept, lora)}
                direct, direct_cost = bench.train(method, erased, kept)
                row["direct"] = rates(bench, erased, kept, direct)
                row["direct"]["row"]["cost"] = direct_cost
                if not result.config.closed_form:  # UCE re-solves; there is nothing to top up
                    topped = bench.run(method, erased, kept, resume=load_lora(lora_path))
                    row["topped up"] = rates(bench, erased, kept, topped.weights)
                    row["topped up"]["row"]["cost"] = run_cost(topped)
                check = _check(bench, lora_path, on_base["erasure"])
            if first:  # the picture: each descendant unedited, and with the first method's base LoRA
                grid_rows += [(kind, unedited[kind]["shown"]), (f"{method} {kind}", row["transferred"]["shown"])]
            entry[kind] = {variant: r["row"] for variant, r in row.items()} | {"check": check}
        methods[method] = entry | {"summary": _summary(entry, list(folders))}
    return {
        "methods": methods,
        "unedited": {k: v["row"] for k, v in unedited.items()},
        "erased": list(erased),
        "kept": list(kept),
        "descendants": {k: str(f) for k, f in folders.items()},
        "descendant_settings": vars(descendants),
        "grid": ([*erased, *kept], grid_rows),
    }


def _summary(entry: dict[str, Any], kinds: Sequence[str]) -> dict[str, float]:
    """Mean over descendants of the transferred LoRA's shortfall against direct training (points; > 0 is worse)."""
    out = {}
    for key in ("ESR-1", "PSR-1"):
        gaps = [entry[k]["direct"][key] - entry[k]["transferred"][key] for k in kinds]
        out[f"{key} gap"] = statistics.fmean(gaps)
        out[f"{key} worst gap"] = max(gaps)
    out["checks held"] = sum(held(entry, k) for k in kinds)
    return out


def held(entry: dict[str, Any], kind: str) -> bool:
    """The target check's verdict on descendant `kind`, by the hosts' rule (`verdict.not_held`) against the same
    check on the base: derived from the stored scores, so results of any version read alike."""
    return not not_held(
        entry[kind]["check"]["erasure"], entry["check on base"]["erasure"], DEFAULTS["esd"]["erased_at"]
    )


def markdown(result: dict[str, Any]) -> str:
    """One row per method, descendant and variant, with the unedited descendant's own rates first."""
    columns = ("ESR-1", "PSR-1", "neighbour-PSR-1")
    head = "| model | method | LoRA | " + " | ".join(columns) + " | steps | target check |"
    lines = ["### transfer", "", head, "|---" * (len(columns) + 5) + "|"]

    def cells(row: dict[str, Any]) -> str:
        return " | ".join(f"{row[c]:.1f}" for c in columns)

    for model, row in result["unedited"].items():
        lines.append(f"| {model} | none | - | {cells(row)} | - | - |")
    for method, entry in result["methods"].items():
        lines.append(
            f"| base | {method} | trained here | {cells(entry['base'])} | {entry['base']['cost']['steps_trained']:.0f}"
            f" | {check_cell(entry, None)} |"
        )
        for kind in result["descendants"]:
            for variant in VARIANTS:
                if variant not in entry[kind]:
                    continue
                row = entry[kind][variant]
                steps = f"{row['cost']['steps_trained']:.0f}" if "cost" in row else "-"
                check = check_cell(entry, kind) if variant == "transferred" else ""
                lines.append(f"| {kind} | {method} | {variant} | {cells(row)} | {steps} | {check} |")
    return "\n".join(lines) + "\n"


def check_cell(entry: dict[str, Any], kind: str | None) -> str:
    """The check's verdict and its least share of the base's erasure (on the base itself: the least score)."""
    base = entry["check on base"]["erasure"]
    if kind is None:
        return f"on its own model (min {min(base.values()):.2f})"
    scores = entry[kind]["check"]["erasure"]
    share = min(scores[c] / base[c] for c in scores)
    return f"{'held' if held(entry, kind) else 'NOT held'} (least share {share:.2f})"


__all__ = ["KINDS", "VARIANTS", "markdown", "task_transfer"]
