"""Finished LoRAs on disk, keyed by what made them, so a queued-again workflow or a restarted server never retrains.

ComfyUI's own cache skips a node whose inputs did not change within one server run. This one survives restarts:
the key hashes the model's weights fingerprint, the prompt encodings the text encoder gave (so a different CLIP or
clip-skip is a different key), every resolved setting and the engine version.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from ..config import EraseConfig
from ..lora.export import LoraFile, load_lora
from ..version import __version__

logger = logging.getLogger(__name__)


def tensors_fingerprint(tensors: Iterable[torch.Tensor]) -> str:
    """Hash of tensors' shapes and exact float32 values (the same CLIP on the same device encodes bit-identically)."""
    digest = hashlib.sha256()
    for t in tensors:
        t = t.detach().to("cpu", torch.float32).contiguous()
        digest.update(str(tuple(t.shape)).encode())
        digest.update(t.numpy().tobytes())
    return digest.hexdigest()[:16]


def cache_key(
    model_fingerprint: str, text_fingerprint: str, config: EraseConfig, extra: dict[str, Any] | None = None
) -> str:
    """A file-name-safe key of everything that decides the trained LoRA."""
    payload = {
        "model": model_fingerprint,
        "text": text_fingerprint,
        "settings": config.resolved().to_dict(),  # an 'auto' is keyed by what it trains as
        "engine": __version__,
        **(extra or {}),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:24]


class LoraCache:
    """A folder of `<key>.safetensors` files written by `export_lora` (atomic), read back with `load_lora`."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.safetensors"

    def get(self, key: str) -> LoraFile | None:
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            return load_lora(path)
        except Exception as exc:  # a damaged cache entry must never stop a run: retrain instead
            logger.warning("Ignoring unreadable cached LoRA %s (%s); it will be retrained.", path, exc)
            return None

    def put_path(self, key: str) -> Path:
        """Where to write an entry (the folder is created); write it with `export_lora` so it is atomic."""
        self.folder.mkdir(parents=True, exist_ok=True)
        return self.path(key)
