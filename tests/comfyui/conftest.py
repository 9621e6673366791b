"""Fixtures for the tests against a real ComfyUI: skipped unless COMFYUI_ROOT points at a ComfyUI checkout."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .server import ComfyServer, build_checkpoint

CHECKPOINT = "tiny_sd15.safetensors"


@pytest.fixture(scope="session")
def comfy_root() -> Path:
    root = os.environ.get("COMFYUI_ROOT")
    if not root:
        pytest.skip("COMFYUI_ROOT is not set (a checkout of github.com/Comfy-Org/ComfyUI); see docs/contributing.md")
    path = Path(root)
    if not (path / "main.py").is_file() or not (path / "comfy").is_dir():
        pytest.fail(f"COMFYUI_ROOT={root} is not a ComfyUI checkout (no main.py / comfy/)")
    return path


@pytest.fixture(scope="session")
def checkpoint(comfy_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("checkpoint")
    path = work / CHECKPOINT
    build_checkpoint(comfy_root, work, path)
    return path


@pytest.fixture(scope="session")
def server(comfy_root: Path, checkpoint: Path, tmp_path_factory: pytest.TempPathFactory):
    front_end = os.environ.get("COMFYUI_FRONT_END_ROOT")
    base = tmp_path_factory.mktemp("comfy-base")
    srv = ComfyServer(comfy_root, base, Path(front_end) if front_end else None)
    srv.prepare(checkpoint)
    srv.start()
    yield srv
    srv.stop()
