"""Glue to the running ComfyUI: progress bar and cancel, front-end events, folders, LoRA dicts and images."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import comfy.model_management as mm
import comfy.utils
import folder_paths
import numpy as np
import torch

from ..erasure_core import Callbacks
from ..erasure_core.frontend import (
    INFO_CONCEPT,
    INFO_FOUND,
    INFO_LOSS,
    INFO_PHASE,
    PROGRESS_EVENT,
    LastErasure,
    read_safetensors,
)

logger = logging.getLogger(__name__)


class ErasureLora(dict):
    """A LORA_MODEL (kohya tensors, what ComfyUI's own LoRA nodes take) that also carries our file metadata."""

    metadata: dict[str, str]

    def __init__(self, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
        super().__init__(tensors)
        self.metadata = dict(metadata or {})


def read_lora_file(path: str | Path) -> ErasureLora:
    """Tensors and header of a LoRA file (safetensors only; nothing is unpickled)."""
    return ErasureLora(*read_safetensors(path))


def send_event(node_id: str | None, data: dict[str, Any]) -> None:
    """Send a progress event to the browser that queued the prompt (no-op outside a server, e.g. in scripts)."""
    try:
        from server import PromptServer

        server = PromptServer.instance
        server.send_sync(PROGRESS_EVENT, {"node": node_id, **data}, server.client_id)
    except Exception as exc:  # progress display must never break a run
        logger.debug("progress event not sent: %s", exc)


def comfy_callbacks(node_id: str | None, total: int, method: str = "") -> Callbacks:
    """Engine callbacks wired to ComfyUI's progress bar (which also raises on Cancel) and to our events."""
    bar = comfy.utils.ProgressBar(total, node_id=node_id)
    erasure = LastErasure()

    def on_step(step: int, steps: int, info: dict[str, Any]) -> None:
        bar.update_absolute(step, steps)
        event = {"step": step, "total": steps, "phase": info.get(INFO_PHASE, "train"), "method": method}
        if INFO_LOSS in info:
            event["loss"] = float(info[INFO_LOSS])
        for key in (INFO_CONCEPT, INFO_FOUND):
            if key in info:
                event[key] = str(info[key])
        if measured := erasure.update(info):
            event["erasure"] = measured
        send_event(node_id, event)

    return Callbacks(on_step=on_step, should_stop=mm.processing_interrupted)


def loras_folder() -> Path:
    """The first LoRA folder (`models/loras` unless extra_model_paths.yaml says otherwise): LoraLoader lists it."""
    return Path(folder_paths.get_folder_paths("loras")[0])


def cache_folder() -> Path:
    return Path(folder_paths.get_user_directory()) / "concept_erasure" / "cache"


def to_image_batch(images: list[np.ndarray]) -> torch.Tensor:
    """uint8 HxWx3 arrays → ComfyUI IMAGE `[B, H, W, 3]` float in 0..1."""
    return torch.stack([torch.from_numpy(np.array(i)).float() / 255.0 for i in images])  # a writable copy


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """One ComfyUI image `[H, W, 3]` float → uint8 array."""
    return (image.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
