"""Package boundaries that the hosts rely on."""

from __future__ import annotations

import ast
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


def test_ray_stays_optional() -> None:
    """Only `batch --ray` needs Ray: the engine, the CLI and the batch runner import without it."""
    code = "import sys, erasure_core, erasure_core.cli, erasure_core.batch; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "False"


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


HOST_ADAPTERS = ("nodes", "a1111", "scripts")
HOST_FACING = ("erasure_core", "erasure_core.frontend", "erasure_core.backends")


def _engine_imports(path: Path) -> list[str]:
    """The `erasure_core` modules a host file imports from, relative imports (`..erasure_core.x`) resolved."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "erasure_core":
            found.append(node.module)
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] == "erasure_core"]
    return found


def test_host_adapters_use_only_the_engines_host_facing_api() -> None:
    """A host reaches the engine through `erasure_core`, `erasure_core.frontend` and `erasure_core.backends`, so
    the engine's internals can change without touching a host (erasure_core/frontend/__init__.py)."""
    offending = {
        f"{path.relative_to(ROOT)}: {module}"
        for folder in HOST_ADAPTERS
        for path in (ROOT / folder).rglob("*.py")
        for module in _engine_imports(path)
        if not any(module == allowed or module.startswith(allowed + ".") for allowed in HOST_FACING[1:])
        and module != HOST_FACING[0]
    }
    assert not offending, sorted(offending)
    assert _engine_imports(ROOT / "nodes" / "training.py"), "relative imports were not seen"
