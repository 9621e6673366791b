"""Continuing a run from the LoRA it wrote: what may be resumed, and the optimiser state kept beside the file.

A LoRA holds only the weights. Adam's moments live in an optional state file beside it (`NAME.erasure-state`,
safetensors inside; the extension is one no host lists as a LoRA), tied to that exact LoRA file by its hash, so a
resumed run continues with the optimiser where it stopped instead of a fresh Adam that takes its first steps at
full size. Without the state file a resume still works and says that its optimiser starts afresh.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file

from .config import EraseConfig
from .errors import ConfigError
from .files import atomic_write
from .lora.export import LoraFile, read_safetensors

STATE_SUFFIX = ".erasure-state"
_FORMAT = "erasure-training-state-v1"
_MOMENTS = ("exp_avg", "exp_avg_sq")


def state_path(lora_path: str | Path) -> Path:
    """Where the training state of the LoRA at `lora_path` is kept."""
    return Path(lora_path).with_suffix(STATE_SUFFIX)


def check_resumable(lora: LoraFile, config: EraseConfig, source: str) -> None:
    """Refuse to continue a LoRA made for another method, other erased concepts or other layers: the run would mix
    two erasures into one file whose metadata describes only one of them. The keep list and the schedule may
    change."""
    info = lora.info()
    if "method" not in info:
        raise ConfigError(
            f"{source} has no erasure metadata, so it was not made by this extension; resume continues only a LoRA "
            "this extension wrote. Start a new run instead."
        )
    made = info.get("config") or {}
    mismatches = []
    if info["method"] != config.method:
        mismatches.append(f"method {info['method'].upper()} (this run: {config.method.upper()})")
    if sorted(info.get("erased") or []) != sorted(config.erase):
        mismatches.append(f"erased concepts {info.get('erased')} (this run: {list(config.erase)})")
    for key in ("layers", "rank"):
        if key in made and made[key] != getattr(config, key):
            mismatches.append(f"{key} {made[key]!r} (this run: {getattr(config, key)!r})")
    if mismatches:
        raise ConfigError(
            f"{source} cannot be resumed by this run: it was made with " + "; ".join(mismatches) + ". Resume it "
            "with the settings it was made with, or start a new run without resume."
        )


def file_hash(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def capture(optimizers: list[torch.optim.Optimizer], names: dict[int, str]) -> dict[str, torch.Tensor]:
    """Adam's moments and step count of every LoRA parameter, keyed `optimizer/parameter name/moment`.
    `names` maps `id(parameter)` to its name in the UNet."""
    tensors: dict[str, torch.Tensor] = {}
    for k, optimizer in enumerate(optimizers):
        for param in optimizer.param_groups[0]["params"]:
            state = optimizer.state.get(param)
            if not state:
                continue  # a concept's optimiser that never stepped
            for moment in _MOMENTS:
                tensors[f"{k}/{names[id(param)]}/{moment}"] = state[moment].detach().float().cpu().contiguous()
            tensors[f"{k}/{names[id(param)]}/step"] = torch.as_tensor(state["step"], dtype=torch.float32).reshape(1)
    return tensors


def restore(optimizers: list[torch.optim.Optimizer], names: dict[int, str], tensors: dict[str, torch.Tensor]) -> bool:
    """Put saved moments into fresh optimisers over the same parameters. False (nothing changed) when the saved
    state is not for exactly these optimisers and parameters."""
    expected = {
        f"{k}/{names[id(param)]}": (optimizer, param)
        for k, optimizer in enumerate(optimizers)
        for param in optimizer.param_groups[0]["params"]
    }
    saved = {key.rsplit("/", 1)[0] for key in tensors}
    if not saved or not saved <= expected.keys():
        return False
    if any(tensors[f"{prefix}/exp_avg"].shape != expected[prefix][1].shape for prefix in saved):
        return False
    for prefix in saved:
        optimizer, param = expected[prefix]
        optimizer.state[param] = {
            "step": tensors[f"{prefix}/step"].reshape(()).clone(),
            **{m: tensors[f"{prefix}/{m}"].to(param.device, param.dtype).clone() for m in _MOMENTS},
        }
    return True


@dataclass
class TrainingState:
    """The optimiser state read from beside a LoRA, or why there is none."""

    tensors: dict[str, torch.Tensor] | None
    note: str


def save_state(tensors: dict[str, torch.Tensor], lora_path: str | Path) -> Path:
    """Write `tensors` (from `capture`) beside the LoRA file, tied to it by its hash; atomic."""
    path = state_path(lora_path)
    metadata = {"format": _FORMAT, "lora_sha256": file_hash(lora_path), "lora_name": Path(lora_path).name}
    with atomic_write(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return path


def load_state(lora_path: str | Path) -> TrainingState:
    """The optimiser state kept beside `lora_path`, if there is one and it belongs to this very file."""
    path = state_path(lora_path)
    if not path.is_file():
        return TrainingState(None, f"no saved optimizer state beside {Path(lora_path).name}; Adam starts afresh")
    tensors, metadata = read_safetensors(path)
    if metadata.get("format") != _FORMAT or metadata.get("lora_sha256") != file_hash(lora_path):
        return TrainingState(
            None, f"{path.name} belongs to another version of {Path(lora_path).name}; Adam starts afresh"
        )
    return TrainingState(tensors, f"optimizer state restored from {path.name}")
