"""`run_batch`: every job of a plan, one at a time on this machine (or on a Ray cluster, `cluster.py`), skipping the
ones an earlier run finished; a job that fails is reported and the others go on."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..callbacks import Callbacks
from ..errors import ErasureError
from ..loading import check_device, default_device, machine_name
from .job import load_job_model, run_job
from .jobfile import BatchPlan, Job
from .keys import job_key, model_fingerprint
from .store import OutputFolder
from .summary import DONE, FAILED, FINISHED_BEFORE, NOT_RUN, Row, write_summary

logger = logging.getLogger(__name__)


class Progress:
    """What a front end shows of a batch; every hook does nothing by default (the CLI draws tqdm bars)."""

    def start(self, total: int, finished_before: int) -> None: ...

    def job_callbacks(self, job: Job) -> Callbacks:
        """The hooks of one job's training (its own progress bar)."""
        return Callbacks()

    def job_ended(self, job: Job, row: Row) -> None: ...

    def close(self) -> None: ...


@dataclass
class Pending:
    job: Job
    key: str


def error_text(exc: BaseException) -> str:
    """Our errors say what to fix already; anything else is named by its type too."""
    return str(exc) if isinstance(exc, ErasureError) else f"{type(exc).__name__}: {exc}"


def plan_rows(plan: BatchPlan, folder: OutputFolder) -> tuple[list[Row], list[Pending]]:
    """Every job's summary row (finished ones read back) and the jobs still to run, each with its key."""
    fingerprints: dict[str, str] = {}
    rows, pending = [], []
    for job in plan.jobs:
        path = job.checkpoint.path
        if path not in fingerprints:
            fingerprints[path] = model_fingerprint(path)
        key = job_key(job, fingerprints[path])
        if (done := folder.finished(job, key)) is not None:
            rows.append(Row(job.name, FINISHED_BEFORE, done))
        else:
            rows.append(Row(job.name, NOT_RUN))
            pending.append(Pending(job, key))
    return rows, pending


def run_batch(
    plan: BatchPlan,
    progress: Progress | None = None,
    cluster: Any = None,
) -> list[Row]:
    """Run the plan's unfinished jobs and write the summary (after every job, so an interrupted batch has one too).
    `cluster`: a `cluster.RayCluster` to send the jobs to instead of running them here."""
    progress = progress or Progress()
    device = plan.device
    if cluster is None:
        device = default_device() if device == "auto" else device
        check_device(device)
        runner = f"this machine ({machine_name(device)})"
    else:
        cluster.connect()  # an unreachable address fails here, before anything is written
        runner = f"Ray ({cluster.address})"
    folder = OutputFolder(plan.output)
    started = time.perf_counter()
    try:
        with folder.session():
            rows, pending = plan_rows(plan, folder)
            index = {row.job: i for i, row in enumerate(rows)}

            def summarise() -> None:
                write_summary(folder.root, rows, str(plan.source), runner, time.perf_counter() - started)

            def finish(job: Job, row: Row) -> None:
                rows[index[job.name]] = row
                summarise()
                progress.job_ended(job, row)

            progress.start(len(rows), len(rows) - len(pending))
            summarise()
            if cluster is not None:
                cluster.run(plan, pending, folder, finish)
            else:
                _run_here(pending, folder, device, progress, finish)
    finally:
        progress.close()
        if cluster is not None:
            cluster.close()
    return rows


def _run_here(
    pending: list[Pending], folder: OutputFolder, device: str, progress: Progress, finish: Callable[[Job, Row], None]
) -> None:
    """One job after another; a checkpoint's model is loaded once for all of its jobs."""
    loaded: tuple[Any, Any] = (None, None)
    for item in pending:
        job = item.job
        model_id = (job.checkpoint, job.dtype)
        try:
            with folder.staging(job) as staged:
                if loaded[0] != model_id:
                    loaded = (None, None)  # free the previous model before the next loads
                    loaded = (model_id, load_job_model(job, device))
                record = run_job(job, staged, device, progress.job_callbacks(job), backend=loaded[1])
                record["key"] = item.key
                folder.commit(job, staged, record)
            row = Row(job.name, DONE, record)
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # reported in the summary; the other jobs go on
            logger.debug("batch job %s failed", job.name, exc_info=True)
            row = Row(job.name, FAILED, error=error_text(exc))
        finish(job, row)
