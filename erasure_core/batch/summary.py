"""The batch summary: every checkpoint × concept set in one table (`summary.md`, `summary.json`), so an operator
sees at a glance which pair did not hold."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..files import atomic_write, write_json
from ..version import __version__

SUMMARY_MD = "summary.md"
SUMMARY_JSON = "summary.json"

DONE = "done"  # finished in this run
FINISHED_BEFORE = "done before"  # skipped: an earlier run of the batch finished it with the same key
FAILED = "failed"
NOT_RUN = "not run"  # the batch was interrupted first


@dataclass
class Row:
    job: str  # checkpoint/concept set
    status: str
    record: dict[str, Any] = field(default_factory=dict)  # job.record(), for finished jobs
    error: str = ""
    attempts: int = 1

    def to_dict(self) -> dict[str, Any]:
        return {"job": self.job, "status": self.status, "error": self.error, **self.record}


def _erasure(record: dict[str, Any]) -> str:
    erasure = record.get("erasure") or {}
    return ", ".join(f"{c} {v:.2f}" for c, v in erasure.items()) if erasure else "not audited"


def _all_erased(row: Row) -> str:
    erased = row.record.get("all_erased")
    if row.status in (FAILED, NOT_RUN):
        return "-"
    if erased is None:
        return "not audited"
    return "yes" if erased else "**no**"


def _number(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _note(row: Row) -> str:
    if row.error:
        return row.error.replace("|", "/").replace("\n", " ")
    notes = []
    if row.record.get("not_erased"):
        notes.append("not erased: " + ", ".join(row.record["not_erased"]))
    if attack := row.record.get("attack_success"):
        rates = ", ".join(f"{c} {'refused' if v is None else f'{100 * v:.0f}%'}" for c, v in attack.items())
        notes.append(f"attack success {rates}")
    return "; ".join(notes)


def markdown(rows: Sequence[Row], source: str) -> str:
    counts = {s: sum(r.status == s for r in rows) for s in (DONE, FINISHED_BEFORE, FAILED, NOT_RUN)}
    short = sum(r.record.get("all_erased") is False for r in rows)
    lines = [
        f"# Batch summary: {source}",
        "",
        f"{len(rows)} jobs: "
        + ", ".join(f"{n} {s}" for s, n in counts.items() if n)
        + (f"; **{short} with a concept not erased**" if short else "")
        + ".",
        "",
        "Erasure is the final audit's score of each erased concept (0..1, on latents training never measured); all "
        "erased = every erased concept reached the run's `erased_at` there. Kept drift is the largest change of a "
        "kept or neighbour prompt, relative to that prompt's own effect (0 = untouched).",
        "",
        "| checkpoint | concepts | method | status | erasure | all erased | kept drift (max) | time (s) | UNet evals | note |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        checkpoint, _, concepts = r.job.partition("/")
        rec = r.record
        lines.append(
            f"| {checkpoint} | {concepts} | {rec.get('method', '-')} | {r.status} | "
            f"{_erasure(rec) if rec else '-'} | {_all_erased(r)} | {_number(rec.get('kept_drift_max'), '.2f')} | "
            f"{_number(rec.get('seconds'), '.1f')} | {_number(rec.get('unet_evals'), 'd')} | {_note(r)} |"
        )
    return "\n".join(lines) + "\n"


def write_summary(folder: Path, rows: Sequence[Row], source: str, runner: str = "", seconds: float = 0.0) -> None:
    """`runner`: where the jobs ran (this machine, or a Ray address); `seconds`: the batch's wall time so far."""
    data = {"source": source, "engine": __version__, "runner": runner, "seconds": round(seconds, 1)}
    write_json(folder / SUMMARY_JSON, {**data, "jobs": [r.to_dict() for r in rows]})
    with atomic_write(folder / SUMMARY_MD) as tmp:
        tmp.write_text(markdown(rows, source))
