"""The engine version, read once from the installed package metadata (falls back to the source tree's value)."""

from importlib import metadata

_SOURCE_VERSION = "0.1.0"  # kept equal to pyproject.toml's version for runs from a plain checkout

try:
    __version__ = metadata.version("concept-erasure")
except metadata.PackageNotFoundError:
    __version__ = _SOURCE_VERSION
