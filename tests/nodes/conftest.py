"""The host-free node helpers, imported the way ComfyUI imports the pack (the repo root as a package)."""

from __future__ import annotations

import importlib
from types import ModuleType

from tests.pack import PACK_NAME, load_pack


def pack_module(name: str) -> ModuleType:
    load_pack()
    return importlib.import_module(f"{PACK_NAME}.{name}")
