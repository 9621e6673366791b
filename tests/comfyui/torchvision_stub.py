"""A stand-in `torchvision` for running ComfyUI on the CI's CPU torch build, which has no matching torchvision.

ComfyUI imports torchvision at start-up for models we never touch (Cosmos, Cascade, ACE); the SD1.5 path never
calls it. `write_stub(folder)` writes a package whose submodules import but do nothing.
"""

from __future__ import annotations

from pathlib import Path

_SUBMODULES = ("transforms", "transforms.functional", "models", "ops", "io", "utils", "transforms.v2")

_GETATTR = """
def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)
    def unavailable(*args, **kwargs):
        raise RuntimeError("torchvision is stubbed in this test environment")
    return unavailable
"""


# transformers reads torchvision.transforms.InterpolationMode at import when torchvision looks installed.
_TRANSFORMS = """
import enum


class InterpolationMode(enum.Enum):
    NEAREST = "nearest"
    NEAREST_EXACT = "nearest-exact"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"
    BOX = "box"
    HAMMING = "hamming"
    LANCZOS = "lanczos"
"""


def write_stub(folder: Path) -> Path:
    """Create `folder/torchvision` (idempotent) and return `folder`, to be put on PYTHONPATH."""
    root = folder / "torchvision"
    for sub in ("", *_SUBMODULES):
        package = root.joinpath(*sub.split(".")) if sub else root
        package.mkdir(parents=True, exist_ok=True)
        extra = _TRANSFORMS if sub == "transforms" else ""
        (package / "__init__.py").write_text('__version__ = "0.0.0"\n' + extra + _GETATTR)
    return folder
