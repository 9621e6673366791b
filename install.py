"""Install what the extension needs and the host's Python lacks. A1111 and Forge run this file at every start (with
their `launch` module importable); ComfyUI-Manager runs it after installing `requirements.txt`; it also runs alone.

Rules, the same in every host:
- torch, torchvision and xformers are never installed, upgraded or pinned: the host owns its build.
- Only what is missing is installed, so a start with everything present costs a few metadata lookups.
- In A1111 and Forge the extension trains on the WebUI's own model and text encoder, so it needs only
  `WEBUI_NEEDS` from `requirements.txt`; a package the WebUI already has is left at the WebUI's version (it pins its
  own transformers, safetensors, numpy), with a note when that version is older than `requirements.txt` asks.
- peft's newer releases import names that the WebUI's pinned libraries lack (A1111 1.10.1 ships transformers 4.30.2
  and accelerate 0.21.0; peft 0.14 needs transformers >= 4.36, 0.15 accelerate >= 0.32), so there the newest peft
  that imports with them is chosen (`peft_for_host`).
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
HOST_OWNED = {"torch", "torchvision", "torchaudio", "xformers"}
# What the WebUI path imports beyond the WebUI's own packages (a test checks this against the real imports).
WEBUI_NEEDS = {"peft", "safetensors", "numpy", "tqdm"}
# peft releases and the oldest transformers / accelerate they import with (checked in A1111 1.10.1's venv).
PEFT_FOR_OLD_LIBRARIES = "peft==0.13.2"
PEFT_NEEDS = {"transformers": (4, 36), "accelerate": (0, 32)}

_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


@dataclass(frozen=True)
class Requirement:
    name: str  # normalised: lower case, '-' for '_' and '.'
    spec: str  # the line as pip takes it, comments removed

    def satisfied_by(self, version: str) -> bool:
        """Whether an installed `version` meets the line's specifier (any version if `packaging` is missing)."""
        try:
            from packaging.requirements import Requirement as Parsed
        except ImportError:
            return True
        return Parsed(self.spec).specifier.contains(version, prereleases=True)


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_requirements(path: Path = HERE / "requirements.txt") -> list[Requirement]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        spec = line.split("#", 1)[0].strip()
        if spec and not spec.startswith("-") and (match := _NAME.match(spec)):
            out.append(Requirement(normalise(match.group(1)), spec))
    return out


def installed_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _release(version: str | None) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version or "")[:2])


def peft_for_host(version_of: Callable[[str], str | None], requirement: Requirement) -> str:
    """The peft line to install next to this host's transformers and accelerate."""
    for library, oldest in PEFT_NEEDS.items():
        have = version_of(library)
        if have is not None and _release(have) < oldest:
            return PEFT_FOR_OLD_LIBRARIES
    return requirement.spec


def plan(
    requirements: Iterable[Requirement], version_of: Callable[[str], str | None], webui: bool
) -> tuple[list[str], list[str]]:
    """(pip lines to install, notes to print) for a host; `version_of(name)` is the installed version or None."""
    installs: list[str] = []
    notes: list[str] = []
    for req in requirements:
        if req.name in HOST_OWNED:
            notes.append(f"{req.spec}: left to the host (the extension never installs torch).")
            continue
        if webui and req.name not in WEBUI_NEEDS:
            continue  # the CLI's and ComfyUI's packages: the WebUI path does not import them
        have = version_of(req.name)
        if have is not None and req.satisfied_by(have):
            continue
        if have is not None and webui and req.name != "peft":
            notes.append(f"{req.name} {have} is older than {req.spec}; kept, as the WebUI pins its own version.")
            continue
        installs.append(peft_for_host(version_of, req) if webui and req.name == "peft" else req.spec)
    return installs, notes


def _pip_installer() -> tuple[bool, Callable[[str], None]]:
    """(True, launch.run_pip) inside A1111 or Forge, else (False, this Python's pip)."""
    try:
        import launch  # the WebUI's launcher module; absent under ComfyUI-Manager and plain Python
    except ImportError:
        pass
    else:
        if hasattr(launch, "run_pip"):
            return True, lambda spec: launch.run_pip(f'install "{spec}"', f"concept-erasure requirement {spec}")

    def pip(spec: str) -> None:
        subprocess.run([sys.executable, "-m", "pip", "install", spec], check=True)

    return False, pip


def main() -> int:
    webui, install = _pip_installer()
    installs, notes = plan(read_requirements(), installed_version, webui)
    for note in notes:
        print(f"[concept-erasure] {note}")
    failed = []
    for spec in installs:
        print(f"[concept-erasure] installing {spec}")
        try:
            install(spec)
        except Exception as exc:  # pip's own output says why; name the package and go on with the others
            print(f"[concept-erasure] could not install {spec}: {exc}", file=sys.stderr)
            failed.append(spec)
    if failed:
        print(f"[concept-erasure] install these by hand in the host's Python: {' '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
