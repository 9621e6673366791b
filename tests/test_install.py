"""install.py's decisions: what it installs in A1111/Forge and under ComfyUI-Manager, and what it never touches."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("concept_erasure_install", ROOT / "install.py")
install = sys.modules.setdefault(spec.name, importlib.util.module_from_spec(spec))
spec.loader.exec_module(install)

REQUIREMENTS = install.read_requirements()
# What A1111 1.10.1's requirements_versions.txt installs (and no peft, diffusers or tokenizers 0.19).
A1111_1_10 = {
    "transformers": "4.30.2",
    "accelerate": "0.21.0",
    "safetensors": "0.4.2",
    "numpy": "1.26.2",
    "tqdm": "4.66.1",
    "tokenizers": "0.13.3",
    "torch": "2.1.2",
}
# Forge's main line (2025-06): it pins peft itself.
FORGE_2025 = {**A1111_1_10, "transformers": "4.46.1", "accelerate": "0.31.0", "peft": "0.13.2", "diffusers": "0.31.0"}


def versions(table: dict[str, str]):
    return lambda name: table.get(name)


def test_requirements_name_everything_the_webui_needs() -> None:
    assert {r.name for r in REQUIREMENTS} >= install.WEBUI_NEEDS


def test_a1111_1_10_gets_only_a_peft_that_imports_with_its_pinned_libraries() -> None:
    installs, notes = install.plan(REQUIREMENTS, versions(A1111_1_10), webui=True)
    assert installs == [install.PEFT_FOR_OLD_LIBRARIES]
    assert notes == []  # transformers 4.30.2 is older than requirements.txt asks, but the WebUI path never imports it


def test_forge_with_its_own_peft_installs_nothing() -> None:
    assert install.plan(REQUIREMENTS, versions(FORGE_2025), webui=True) == ([], [])


def test_a_webui_with_new_libraries_gets_the_requirements_peft() -> None:
    table = {**A1111_1_10, "transformers": "4.57.0", "accelerate": "1.10.0"}
    installs, _ = install.plan(REQUIREMENTS, versions(table), webui=True)
    (peft,) = [r.spec for r in REQUIREMENTS if r.name == "peft"]
    assert installs == [peft]


def test_a_webui_pinned_package_older_than_asked_is_kept_with_a_note() -> None:
    table = {**FORGE_2025, "safetensors": "0.3.1"}
    installs, notes = install.plan(REQUIREMENTS, versions(table), webui=True)
    assert installs == [] and len(notes) == 1 and "safetensors 0.3.1" in notes[0]


def test_comfyui_manager_installs_what_is_missing_or_too_old_and_never_torch() -> None:
    table = {r.name: "99.0" for r in REQUIREMENTS}
    del table["diffusers"]
    table["peft"] = "0.10.0"
    reqs = [*REQUIREMENTS, install.Requirement("torch", "torch>=2.1")]
    installs, notes = install.plan(reqs, versions(table), webui=False)
    assert sorted(installs) == sorted(r.spec for r in REQUIREMENTS if r.name in ("diffusers", "peft"))
    assert not any("torch" in i for i in installs) and any("torch" in n for n in notes)


def test_everything_present_installs_nothing() -> None:
    table = {r.name: "99.0" for r in REQUIREMENTS}
    assert install.plan(REQUIREMENTS, versions(table), webui=False) == ([], [])
    assert install.plan(REQUIREMENTS, versions(table), webui=True) == ([], [])


def _run(tmp_path: Path, launch_source: str | None) -> subprocess.CompletedProcess:
    """Run install.py as a host would: A1111 with its `launch` module on PYTHONPATH, or a plain Python."""
    env_path = tmp_path / "host"
    env_path.mkdir()
    if launch_source is not None:
        (env_path / "launch.py").write_text(textwrap.dedent(launch_source))
    return subprocess.run(
        [sys.executable, str(ROOT / "install.py")],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(env_path), "PATH": ""},
        cwd=tmp_path,
        timeout=120,
    )


def test_under_a_webui_it_installs_through_the_webuis_pip_with_the_spec_quoted(tmp_path: Path) -> None:
    """This Python has every requirement, so nothing is installed; a missing one would go through launch.run_pip."""
    log = tmp_path / "calls.txt"
    launch = f"""
        def run_pip(command, desc=None):
            open({str(log)!r}, "a").write(command + "\\n")
    """
    result = _run(tmp_path, launch)
    assert result.returncode == 0, result.stderr
    assert not log.exists() and "installing" not in result.stdout

    calls: list[str] = []
    fake = type(sys)("launch")
    fake.run_pip = lambda command, desc=None: calls.append(command)
    sys.modules["launch"] = fake
    try:
        webui, pip = install._pip_installer()
    finally:
        del sys.modules["launch"]
    pip("peft>=0.13")
    assert webui and calls == ['install "peft>=0.13"']  # quoted: the WebUI runs pip through a shell


@pytest.mark.parametrize("launch_source", [None, "raise ImportError('not a WebUI')\n"])
def test_outside_a_webui_it_runs_quietly_and_imports_no_webui_module(tmp_path: Path, launch_source) -> None:
    result = _run(tmp_path, launch_source)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""


WEBUI_PROVIDES = {"torch", "PIL", "gradio", "fastapi", "modules", "backend", "networks", "open_clip"}
IMPORT_NAMES = {"PIL": "pillow"}  # import name -> distribution, where they differ


def _imported_names(path: Path, module_level_only: bool) -> set[str]:
    """Top-level names of the absolute imports in a file (module level, or everywhere)."""
    import ast

    tree = ast.parse(path.read_text())
    nodes = tree.body if module_level_only else list(ast.walk(tree))
    names = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_webui_needs_names_every_package_the_webui_path_imports_beyond_the_webui() -> None:
    """What install.py installs in A1111/Forge covers what the adapter and the engine modules it loads import."""
    code = "import sys, a1111.jobs, a1111.backend; print('\\n'.join(m.__file__ for m in list(sys.modules.values()) if getattr(m, '__file__', None)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    ours = [Path(f) for f in out.stdout.split() if Path(f).is_relative_to(ROOT)]
    assert any(p.name == "trainer.py" for p in ours)
    names = set()
    for path in ours:
        names |= _imported_names(path, module_level_only=path.parts[len(ROOT.parts)] != "a1111")
    for path in (ROOT / "a1111").glob("*.py"):  # the tab, the routes and the WebUI glue too, lazy imports included
        names |= _imported_names(path, module_level_only=False)
    third_party = names - set(sys.stdlib_module_names) - {"erasure_core", "a1111", "__future__"} - WEBUI_PROVIDES
    assert {IMPORT_NAMES.get(n, n) for n in third_party} <= install.WEBUI_NEEDS
