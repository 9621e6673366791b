"""On-disk cache of each erased concept's distances to the candidate vocabulary (EAP/AGE's search set-up).

Encoding the vocabulary is the whole cost of the candidate search (20000 prompts through the text encoder: about a
minute for the demo model on one CPU thread, far longer for SD on a CPU), and it gives the same distances every time
the concept is erased again on the same model, which hosts do whenever any setting changes. The reference code
caches its vocabulary's encodings on disk for the same reason (algorithms.md §2.1); one row of distances per concept
keeps the cache at 4 bytes per word instead of a whole encoding per word.

A row's key hashes the concept's own encoding, so that it changes with the text encoder, the tokenizer and the
prompt, and the vocabulary. `ERASURE_CACHE_DIR` names the folder, or `off`; without it the folder is the one the
backend declares (`backends.base.host_cache_folder`: ComfyUI's user folder), else the user's cache folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

logger = logging.getLogger(__name__)

CACHE_ENV = "ERASURE_CACHE_DIR"
_OFF = ("", "0", "off", "none", "false")
_FORMAT = b"vocabulary-distances-v1"
_EXACT_NEAREST = "exact_nearest"  # metadata: only this many nearest distances are exact (absent: every one)


def cache_dir(host_folder: Path | None = None) -> Path | None:
    """The folder of cached distance rows, or None when `ERASURE_CACHE_DIR` turns the cache off.

    `host_folder` is where the host keeps its files (`backends.base.host_cache_folder`); the variable wins over it.
    """
    value = os.environ.get(CACHE_ENV)
    if value is not None:
        return None if value.strip().lower() in _OFF else Path(value).expanduser()
    if host_folder is not None:
        return Path(host_folder)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "concept-erasure" / "vocabulary-distances"


def row_key(encoding: torch.Tensor, vocabulary: Sequence[str], kind: str = "") -> str:
    """Hash of one concept's flattened encoding and of the vocabulary (in order); `kind` names another kind of row
    (the guard's "pooled-cosine" similarities) so the two never share a file."""
    digest = hashlib.sha256(_FORMAT + kind.encode())
    digest.update(encoding.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    digest.update("\n".join(vocabulary).encode())
    return digest.hexdigest()[:32]


def load_row(folder: Path, key: str, size: int, exact_nearest: int | None = None) -> torch.Tensor | None:
    """The cached row, or None when it is missing, unreadable, not `size` finite distances, or exact for fewer than
    the `exact_nearest` nearest words (None: all of them; see `candidates.vocabulary_distances`)."""
    path = folder / f"{key}.safetensors"
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            row = f.get_tensor("distances")
            stored = (f.metadata() or {}).get(_EXACT_NEAREST)
    except Exception as exc:  # a damaged file is recomputed, never trusted
        logger.warning("Ignoring the unreadable cache file %s (%s); the distances are recomputed.", path, exc)
        return None
    if stored is not None and (exact_nearest is None or int(stored) < exact_nearest):
        return None
    return row if row.shape == (size,) and bool(torch.isfinite(row).all()) else None


def save_row(folder: Path, key: str, row: torch.Tensor, exact_nearest: int | None = None) -> None:
    """Write a row atomically; a folder that cannot be written only costs the next run its set-up again."""
    path = folder / f"{key}.safetensors"
    tmp = path.with_name(path.name + ".partial")
    metadata = None if exact_nearest is None else {_EXACT_NEAREST: str(exact_nearest)}
    try:
        folder.mkdir(parents=True, exist_ok=True)
        save_file({"distances": row.detach().to("cpu", torch.float32).contiguous()}, str(tmp), metadata)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        logger.warning(
            "Could not cache the vocabulary distances in %s (%s); set %s to another folder.", folder, exc, CACHE_ENV
        )
