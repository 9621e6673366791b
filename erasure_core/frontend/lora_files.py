"""Safe LoRA file names inside a LoRA folder: no escaping the folder, no silent overwrite."""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import ConfigError

_FORBIDDEN = re.compile(r'[<>:"|?*\x00-\x1f]')
_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)), *(f"lpt{i}" for i in range(1, 10))}
SUFFIX = ".safetensors"


def safe_relative_name(name: str) -> Path:
    """Check a user-typed name such as `erased/van_gogh` and return it as a relative path ending in .safetensors.

    Subfolders are allowed; absolute paths, `..`, drive letters and characters Windows cannot store are refused.
    """
    text = (name or "").strip().replace("\\", "/")
    if text.lower().endswith(SUFFIX):
        text = text[: -len(SUFFIX)]
    if not text:
        raise ConfigError("The LoRA file name is empty; type a name such as 'erased/van_gogh'.")
    if text.startswith("/") or re.match(r"^[a-zA-Z]:", text):
        raise ConfigError(f"The LoRA name {name!r} is an absolute path; give a name inside the loras folder.")
    parts = [p for p in text.split("/") if p not in ("", ".")]
    for part in parts:
        if part == "..":
            raise ConfigError(f"The LoRA name {name!r} would leave the loras folder ('..'); remove the '..'.")
        if _FORBIDDEN.search(part):
            raise ConfigError(f'The LoRA name {name!r} contains a character file systems refuse (<>:"|?*).')
        if part.lower() in _RESERVED or part.endswith((" ", ".")):
            raise ConfigError(f"'{part}' cannot be a file or folder name on Windows; choose another name.")
    return Path(*parts[:-1], parts[-1] + SUFFIX)


def resolve_target(folder: str | Path, name: str, overwrite: bool = False) -> Path:
    """The absolute file path for `name` inside `folder`; refuses an existing file unless `overwrite`."""
    root = Path(folder).resolve()
    target = (root / safe_relative_name(name)).resolve()
    if root not in target.parents:
        raise ConfigError(f"The LoRA name {name!r} resolves outside {root}; choose a plain name.")
    if target.exists() and not overwrite:
        raise ConfigError(
            f"{target.name} already exists in {target.parent}; choose another name or switch 'overwrite' on."
        )
    return target


def next_free_name(folder: str | Path, name: str) -> str:
    """`name`, or `name_2`, `name_3`, ... : the first that does not exist yet (for 'auto-number' saving)."""
    relative = safe_relative_name(name)
    stem = relative.with_suffix("")
    candidate, counter = relative, 1
    while (Path(folder) / candidate).exists():
        counter += 1
        candidate = stem.with_name(f"{stem.name}_{counter}").with_suffix(SUFFIX)
    return candidate.as_posix()
