"""The batch's output folder: one folder per job, `<output>/<checkpoint>/<concept set>/`, and the summary.

A job is written into `<output>/.staging/` and moved into place only once all of its files are there, its
`result.json` (the summary record and the job's key) among them; so a job folder always holds one finished run, and a
batch started again skips every job whose folder holds a result with the same key. A crash leaves at most a staging
folder, removed when the next batch starts here. One batch writes into a folder at a time (`.batch.lock`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..files import atomic_write, write_json
from .jobfile import Job

RESULT = "result.json"
STAGING = ".staging"
LOCK = ".batch.lock"


class OutputFolder:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def job_dir(self, job: Job) -> Path:
        return self.root / job.checkpoint.name / job.concepts.name

    def finished(self, job: Job, key: str) -> dict[str, Any] | None:
        """The job's record where this output folder holds its finished run with this key, else None."""
        path = self.job_dir(job) / RESULT
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return data if data.get("key") == key else None

    @contextlib.contextmanager
    def session(self) -> Iterator[OutputFolder]:
        """Hold the folder for one batch: create it, take the lock, clear what an interrupted batch left."""
        self.root.mkdir(parents=True, exist_ok=True)
        lock = self.root / LOCK
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            if _alive(lock):
                raise ConfigError(
                    f"Another batch is writing into {self.root} (process {lock.read_text().strip()}); wait for it "
                    "or choose another output folder."
                ) from None
            lock.unlink(missing_ok=True)  # left by a batch that was killed
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        try:
            shutil.rmtree(self.root / STAGING, ignore_errors=True)
            yield self
        finally:
            shutil.rmtree(self.root / STAGING, ignore_errors=True)
            lock.unlink(missing_ok=True)

    @contextlib.contextmanager
    def staging(self, job: Job) -> Iterator[Path]:
        """A fresh, empty folder to write the job into; removed unless `commit` moved it into place."""
        folder = self.root / STAGING / f"{job.checkpoint.name}--{job.concepts.name}"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        try:
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def commit(self, job: Job, staged: Path, record: dict[str, Any]) -> Path:
        """Move a finished job's folder into place, replacing an older run of it."""
        write_json(staged / RESULT, record)
        final = self.job_dir(job)
        final.parent.mkdir(parents=True, exist_ok=True)
        old = final.with_name(final.name + ".replaced")
        shutil.rmtree(old, ignore_errors=True)
        if final.exists():
            final.rename(old)
        staged.rename(final)
        shutil.rmtree(old, ignore_errors=True)
        return final

    def write_files(self, folder: Path, files: dict[str, bytes]) -> None:
        """Files a Ray worker sent back, each written atomically."""
        for name, data in files.items():
            with atomic_write(folder / name) as tmp:
                tmp.write_bytes(data)


def _alive(lock: Path) -> bool:
    try:
        pid = int(lock.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return False
    return pid != os.getpid()
