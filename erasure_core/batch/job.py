"""One batch job: erase a concept set from a checkpoint and write what the job asks for into a folder.

The folder is a staging folder (`store.py` moves it into place once the job has finished), so the files here are
written plainly, each atomically as everywhere else. The same function runs in-process and in a Ray task.
"""

from __future__ import annotations

import os
import platform
import socket
import time
from pathlib import Path
from typing import Any

from ..attack import ATTACKS
from ..attack import attack as run_attack
from ..callbacks import Callbacks
from ..errors import ConfigError, ErasureError
from ..files import write_json
from ..frontend.settings import attack_config
from ..loading import load_model, machine_name
from ..lora.export import load_lora
from ..trainer import EraseResult, erase, export_lora, lora_weights_for
from .jobfile import Job

LORA = "lora.safetensors"
REPORT = "report.json"  # the run's full record, as `erase --report` writes it
AUDIT = "audit.json"
PREVIEW = "preview.png"
MERGED = "erased.safetensors"
ATTACK = "attack.json"


def load_job_model(job: Job, device: str) -> Any:
    c = job.checkpoint
    return load_model(c.path, device, job.dtype, c.config_dir, c.prediction_type)


def run_job(job: Job, folder: Path, device: str, callbacks: Callbacks | None = None, backend: Any = None) -> dict:
    """Run `job` on `device`, writing its files into `folder`; returns its summary record. `backend`: the job's
    model already loaded (the local runner keeps it between the jobs of one checkpoint; `erase` hands it back
    unchanged)."""
    start = time.perf_counter()
    if backend is None:
        backend = load_job_model(job, device)
    if job.outputs.preview and getattr(backend, "vae", None) is None:
        raise ConfigError(f"{job.checkpoint.path} was loaded without an autoencoder, so no preview can be drawn.")
    result = erase(backend, job.config, callbacks)
    export_lora(result, folder / LORA)
    files = [LORA]
    report = {**result.report(), "machine": machine_name(device)}
    if result.audit is not None:
        write_json(folder / AUDIT, result.audit.to_dict())
        files.append(AUDIT)
    if job.outputs.preview:
        from ..preview import write_before_after

        write_before_after(backend, result, folder / PREVIEW)
        files.append(PREVIEW)
    if job.outputs.apply:
        from ..checkpoint import apply_lora_to_checkpoint

        apply_lora_to_checkpoint(job.checkpoint.path, folder / LORA, folder / MERGED, job.outputs.apply_strength)
        files.append(MERGED)
    attacks = _attack(job, backend, folder / LORA) if job.outputs.attack else {}
    if attacks:
        write_json(folder / ATTACK, attacks)
        files.append(ATTACK)
    write_json(folder / REPORT, report)
    files.append(REPORT)
    return record(job, result, attacks, files, time.perf_counter() - start, device)


def _attack(job: Job, backend: Any, lora_path: Path) -> dict[str, Any]:
    """The recovery-attack audit of each erased concept, `attack_budget` seconds each. A concept the audit refuses
    (one the model never drew) is reported with the reason; the job's LoRA stands."""
    lora = load_lora(lora_path)
    weights = lora_weights_for(backend, lora)
    reports: dict[str, Any] = {}
    for concept in job.config.erase:
        config = attack_config(lora.metadata, concept, ATTACKS, job.outputs.attack_budget, job.config.seed or 0)
        try:
            reports[concept] = run_attack(backend, weights, config).to_dict()
        except ErasureError as exc:
            reports[concept] = {"error": str(exc)}
    return reports


def record(
    job: Job, result: EraseResult, attacks: dict[str, Any], files: list[str], seconds: float, device: str
) -> dict[str, Any]:
    """What the summary shows of a finished job."""
    rows = result.audit.rows if result.audit is not None else []
    erasure = {r["prompt"]: r["erasure"] for r in rows if r["role"] == "erased"}
    drifts = [r["drift"] for r in rows if r["role"] != "erased"]
    erased_at = job.config.erased_at
    return {
        "checkpoint": job.checkpoint.name,
        "concepts": job.concepts.name,
        "method": job.config.method,
        "erase": list(job.config.erase),
        "keep": list(job.config.keep),
        "erasure": erasure,
        "erased_at": erased_at,
        "all_erased": all(v >= erased_at for v in erasure.values()) if erasure else None,
        "kept_drift_max": max(drifts) if drifts else None,
        "kept_drift_mean": sum(drifts) / len(drifts) if drifts else None,
        "seconds": round(seconds, 2),
        "train_seconds": round(result.seconds, 2),
        "unet_evals": result.unet_evals,
        "stop_reason": result.stop_reason(),
        "not_erased": result.not_erased,
        "attack_success": {c: a.get("success_rate") for c, a in attacks.items()},  # None: refused (attack.json)
        "files": files,
        "machine": machine_name(device),
        "worker": {"host": socket.gethostname(), "pid": os.getpid(), "python": platform.python_version()},
    }
