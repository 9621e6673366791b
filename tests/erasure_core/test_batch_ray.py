"""`batch --ray`: jobs sent to a local Ray instance (2 CPUs, so 2 workers), one of them killed mid-job and retried
elsewhere; the files arrive in the output folder as the local runner writes them."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from erasure_core.batch import load_job_file, run_batch
from erasure_core.batch.cluster import RayCluster
from erasure_core.lora.export import load_lora
from erasure_core.testing import save_tiny_model

ray = pytest.importorskip("ray")

TASK_TITLE = b"ray::erase_job"  # Ray titles a worker process by the task it runs


def _running_task_pids() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "cmdline").read_bytes().startswith(TASK_TITLE):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def _kill_one_worker_mid_job(killed: list[int], stop: threading.Event) -> None:
    deadline = time.monotonic() + 240
    while not stop.is_set() and time.monotonic() < deadline:
        if pids := _running_task_pids():
            time.sleep(1.0)  # well into the job: the model is loaded and training
            if pids[0] in _running_task_pids():
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])
                return
        time.sleep(0.1)


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="finds Ray's workers through /proc")
@pytest.mark.parametrize("retries", [2, 0])
def test_a_batch_on_ray_survives_a_worker_killed_mid_job(retries: int, tmp_path: Path) -> None:
    """With retries the killed job is run again on another worker; without, it is reported and the rest go on."""
    model = save_tiny_model(tmp_path / "tiny", "sd1")
    path = tmp_path / "jobs.toml"
    concept_sets = "".join(
        f'[[concepts]]\nname = "{c}"\nmethod = "esd"\nerase = ["{c}"]\nsteps = 40\nuntil_erased = false\n'
        for c in ("cat", "car", "apple")
    )
    path.write_text(
        f'output = "out"\nretries = {retries}\n[[checkpoints]]\nname = "tiny"\npath = "{model}"\n{concept_sets}'
    )
    plan = load_job_file(path)
    killed: list[int] = []
    stop = threading.Event()
    killer = threading.Thread(target=_kill_one_worker_mid_job, args=(killed, stop))
    killer.start()
    try:
        rows = run_batch(plan, cluster=RayCluster("auto", num_cpus=2))
    finally:
        stop.set()
        killer.join()
    assert killed, "no Ray worker was seen running a job"
    out = tmp_path / "out"
    failed = [r for r in rows if r.status == "failed"]
    if retries:
        assert not failed and killed[0] not in {r.record["worker"]["pid"] for r in rows}  # finished elsewhere
    else:
        assert len(failed) == 1 and "lost its worker" in failed[0].error
        assert not (out / failed[0].job).exists()
    done = [r.job.split("/")[1] for r in rows if r.status == "done"]
    assert len(done) == 3 - len(failed)
    for concept in done:
        assert load_lora(out / "tiny" / concept / "lora.safetensors").info()["erased"] == [concept]
        assert (out / "tiny" / concept / "audit.json").is_file()
    assert f"| tiny | {done[0]} | esd | done |" in (out / "summary.md").read_text()
    assert not (out / ".staging").exists() and not ray.is_initialized()  # the local instance was shut down
