"""What a batch job's results are keyed by, so a batch started again skips the jobs it already finished.

The key hashes the model's files, the concept set's resolved settings, what the job produces and the engine
version, as the ComfyUI node's LoRA cache keys its entries by the model's weights and the settings. The model is
fingerprinted from its files rather than its loaded weights, so that finished jobs are known before any model
loads: every file's name and size, small files whole, and for weight files the header (tensor names, shapes and
offsets) plus evenly spaced samples of the data, a few MB read from even a 7 GB SDXL checkpoint.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

from ..demo import DEMO_DIR
from ..version import __version__
from .jobfile import DEMO, Job

WHOLE_FILE_BYTES = 1 << 20  # files up to 1 MiB (configs, tokenizers) are hashed whole
HEAD_BYTES = 1 << 20  # of larger files: the first MiB (a safetensors header with every tensor's name and shape)
SAMPLES = 64  # and this many evenly spaced chunks of the rest
SAMPLE_BYTES = 1 << 16


def file_fingerprint(path: Path, digest: hashlib._Hash) -> None:
    size = path.stat().st_size
    digest.update(f"{path.name}:{size}".encode())
    with path.open("rb") as f:
        if size <= WHOLE_FILE_BYTES:
            digest.update(f.read())
            return
        digest.update(f.read(HEAD_BYTES))
        for k in range(SAMPLES):
            f.seek(HEAD_BYTES + (size - HEAD_BYTES - SAMPLE_BYTES) * k // max(1, SAMPLES - 1))
            digest.update(f.read(SAMPLE_BYTES))


def model_fingerprint(path: str) -> str:
    """A hash of a checkpoint's files: one file, or every file under a diffusers folder (the demo model's own)."""
    root = DEMO_DIR if path == DEMO else Path(path)
    digest = hashlib.sha256()
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    for file in files:
        digest.update(str(file.relative_to(root) if file != root else file.name).encode())
        file_fingerprint(file, digest)
    return digest.hexdigest()[:16]


def job_key(job: Job, fingerprint: str) -> str:
    """Everything that decides a job's files: the model, its loading options and precision, the resolved settings,
    the outputs asked for and the engine version. The device is left out: a rerun on another device is the same job."""
    payload = {
        "model": fingerprint,
        "loading": {"config_dir": job.checkpoint.config_dir, "prediction_type": job.checkpoint.prediction_type},
        "dtype": job.dtype,
        "settings": job.config.resolved().to_dict(),
        "outputs": dataclasses.asdict(job.outputs),
        "engine": __version__,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:24]
