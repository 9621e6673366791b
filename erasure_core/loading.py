"""Loading a model by what a user names: 'demo', a diffusers folder or a single-file checkpoint (the CLI and the
batch runner; the nodes and the tab use the model their host loaded)."""

from __future__ import annotations

import os
import platform
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from .config import is_closed_form, setting_names
from .defaults import DEMO_OVERRIDES
from .errors import ConfigError

DEMO_MODEL = "demo"
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def check_device(device: str) -> None:
    """A clear message for a device this machine does not have, before anything loads."""
    try:
        kind = torch.device(device).type
    except RuntimeError:
        raise ConfigError(f"--device {device!r} is not a torch device; use cpu, cuda, cuda:1 or mps.") from None
    if kind == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"--device {device}: this machine has no CUDA device torch can use (no NVIDIA GPU, or a CPU-only torch "
            "build); use --device cpu."
        )
    if (
        kind == "cuda"
        and torch.device(device).index is not None
        and torch.device(device).index >= torch.cuda.device_count()
    ):
        raise ConfigError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s).")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"--device {device}: MPS (Apple GPU) is not available here; use --device cpu.")


def machine_name(device: str, threads: bool = False) -> str:
    """Where a report's seconds were measured: the GPU's name, or the CPU's architecture and cores."""
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(device)
    name = f"{platform.machine()} CPU, {os.cpu_count()} cores"
    return f"{name}, {torch.get_num_threads()} threads" if threads else name


def with_demo_recipe(method: str, settings: Mapping[str, Any]) -> dict[str, Any]:
    """`settings` for the demo model: its shorter recipe (`DEMO_OVERRIDES`) wherever the user set no value of their
    own. A closed-form method has no recipe to shorten."""
    if is_closed_form(method):
        return dict(settings)
    names = setting_names(method)
    return {**{k: v for k, v in DEMO_OVERRIDES.items() if k in names}, **settings}


def load_model(
    model: str | Path,
    device: str = "cpu",
    dtype: str = "fp32",
    config_dir: str | Path | None = None,
    prediction_type: str | None = None,
) -> Any:
    """The model's backend, with its autoencoder as `backend.vae` where it has one (for preview grids)."""
    if str(model) == DEMO_MODEL:
        from .demo import load_demo

        return load_demo(device).backend
    from .backends.diffusers_backend import load_diffusers_model

    return load_diffusers_model(model, device, DTYPES[dtype], config_dir, prediction_type)
