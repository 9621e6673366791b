"""Batch jobs on a Ray cluster (`batch --ray ADDRESS`, or `--ray auto` for a local Ray instance).

Each job is one Ray task asking for one GPU, or one CPU on a cluster without GPUs. The task works in a temporary
folder on its worker and sends the files back, so workers need the checkpoints at the same paths (a shared disk)
but no shared output folder; the driver writes them into the output folder as the local runner does. A worker lost
mid-job (a node gone, a process killed) fails the task with a system error, which Ray retries elsewhere up to the
job file's `retries`; an error of the job itself is not retried. This package is sent to the workers with the task
(`py_modules`), so only Ray and the dependencies need installing there. Ray is optional: `pip install ".[cluster]"`.
"""

from __future__ import annotations

import logging
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..callbacks import Callbacks
from ..errors import ConfigError
from .jobfile import BatchPlan, Job
from .runner import Pending, error_text
from .store import OutputFolder
from .summary import DONE, FAILED, Row

logger = logging.getLogger(__name__)

LOCAL = "auto"  # start a local Ray instance (or join the one already running on this machine)
CONNECT_TIMEOUT_S = 5.0


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError(
            '--ray needs Ray, an optional dependency: `pip install "ray>=2.9"` (or `pip install ".[cluster]"` in '
            "this repository)."
        ) from None
    return ray


def check_reachable(address: str) -> None:
    """Refuse an address nothing answers at, in seconds rather than after Ray's own minute of retries."""
    host_port = address.removeprefix("ray://")
    host, _, port = host_port.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(
            f"--ray {address!r} is not a Ray address; give HOST:PORT (the head node's GCS port, usually 6379), "
            "ray://HOST:10001 (Ray Client), or 'auto' for a local Ray instance."
        )
    try:
        with socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        raise ConfigError(
            f"Cannot reach the Ray cluster at {address} ({exc}); check the address and that the head node runs "
            "(`ray status` there). Nothing was run or written."
        ) from None


class RayCluster:
    """Where `run_batch` sends jobs. `num_cpus`: the CPUs of a local instance this starts (default: all)."""

    def __init__(self, address: str = LOCAL, num_cpus: int | None = None) -> None:
        self.address = address
        self.num_cpus = num_cpus
        self._started = False

    def connect(self) -> None:
        ray = _ray()
        if self.address != LOCAL:
            check_reachable(self.address)
        package = str(Path(__file__).resolve().parents[1])
        kwargs: dict[str, Any] = {"runtime_env": {"py_modules": [package]}, "log_to_driver": False}
        if self.address == LOCAL:
            kwargs |= {"num_cpus": self.num_cpus, "include_dashboard": False}
        else:
            kwargs["address"] = self.address
        try:
            ray.init(**kwargs)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ConfigError(f"Could not join the Ray cluster at {self.address}: {exc}") from None
        self._started = True

    def close(self) -> None:
        if self._started:
            _ray().shutdown()
            self._started = False

    def run(
        self, plan: BatchPlan, pending: list[Pending], folder: OutputFolder, finish: Callable[[Job, Row], None]
    ) -> None:
        ray = _ray()
        gpus = ray.cluster_resources().get("GPU", 0)
        resources = {"num_gpus": 1} if gpus else {"num_cpus": 1}
        task = ray.remote(erase_job).options(max_retries=plan.retries, retry_exceptions=False, **resources)
        device = plan.device if plan.device != "auto" else ("cuda" if gpus else "cpu")
        running = {task.remote(item.job, device): item for item in pending}
        while running:
            ready, _ = ray.wait(list(running), num_returns=1)
            item = running.pop(ready[0])
            job = item.job
            try:
                outcome = ray.get(ready[0])
            except ray.exceptions.RayError as exc:  # the worker was lost more often than `retries` allows
                finish(job, Row(job.name, FAILED, error=f"lost its worker {plan.retries + 1} times: {exc}"))
                continue
            if "error" in outcome:
                finish(job, Row(job.name, FAILED, error=outcome["error"]))
                continue
            with folder.staging(job) as staged:
                folder.write_files(staged, outcome["files"])
                record = {**outcome["record"], "key": item.key}
                folder.commit(job, staged, record)
            finish(job, Row(job.name, DONE, record))


def erase_job(job: Job, device: str) -> dict[str, Any]:
    """The Ray task: run the job in a temporary folder and return its record and files (or its error)."""
    from .job import run_job

    with tempfile.TemporaryDirectory(prefix="erasure-batch-") as tmp:
        try:
            record = run_job(job, Path(tmp), device, _ray_progress(job))
        except Exception as exc:  # the job's own error: reported, not retried
            return {"error": error_text(exc)}
        files = {name: (Path(tmp) / name).read_bytes() for name in record["files"]}
    return {"record": record, "files": files}


def _ray_progress(job: Job) -> Callbacks:
    """A progress bar Ray draws on the driver for this job (where this Ray has one)."""
    try:
        from ray.experimental.tqdm_ray import tqdm
    except ImportError:
        return Callbacks()
    bar = tqdm(total=job.config.total_steps, desc=job.name)
    done = [0]

    def on_step(step: int, total: int, info: dict[str, Any]) -> None:
        if step > done[0]:
            bar.update(step - done[0])
            done[0] = step
        if step >= total:
            bar.close()

    return Callbacks(on_step=on_step)
