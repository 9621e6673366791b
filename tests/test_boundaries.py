"""Package boundaries that the hosts rely on."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import tomllib

import erasure_core

ROOT = Path(__file__).resolve().parents[1]


def test_engine_imports_no_host() -> None:
    code = (
        "import sys, erasure_core, erasure_core.cli; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'comfy', 'comfy_api', 'folder_paths', 'server', 'modules', 'gradio'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"


def test_public_api_is_listed() -> None:
    for name in erasure_core.__all__:
        assert hasattr(erasure_core, name), name


def test_version_matches_the_package_metadata() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    from erasure_core.version import _SOURCE_VERSION

    assert project["version"] == _SOURCE_VERSION


def test_requirements_never_pin_torch() -> None:
    lines = [line.split("#")[0].strip() for line in (ROOT / "requirements.txt").read_text().splitlines()]
    assert not any(line.startswith(("torch", "torchvision", "numpy=")) for line in lines)
