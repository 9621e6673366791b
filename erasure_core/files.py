"""Writing files the way every front end must: atomically (a crash or a cancel never leaves half a file where a
host would load it) and with the permissions a plain `open()` would give, so the other user that runs a shared
WebUI or ComfyUI can read them."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_write(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path` to write; once the block succeeds it gets the usual permissions and
    replaces `path`, and on any error (a cancel too) it is removed."""
    path = Path(path)
    tmp = path.with_name(path.name + ".partial")
    try:
        yield tmp
        give_usual_permissions(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def give_usual_permissions(path: str | Path) -> None:
    """The mode a plain `open()` would give a new file (0666 less the umask): safetensors writes 0600."""
    os.chmod(path, 0o666 & ~_umask())


def _umask() -> int:
    """The process umask, read without changing it where Linux shows it (a WebUI writes files from many threads)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_json(path: str | Path, data: Any) -> None:
    """`data` as JSON every parser reads (non-finite numbers as null), written atomically."""
    from . import jsonsafe

    with atomic_write(path) as tmp:
        tmp.write_text(jsonsafe.dumps(data, indent=2, default=str))
