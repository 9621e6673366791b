"""How the engine reports progress to a host and learns that it should stop.

The engine asks, the host answers (the split of ComfyUI's ProgressBar hook): the trainer calls `on_step` once per
step with a small `info` dict and polls `should_stop`; hosts wire them to their own progress bars and cancel buttons.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# Keys of the `info` dict passed to `on_step`.
INFO_LOSS = "loss"  # float: the parameter loss of this step
INFO_CONCEPT = "concept"  # str: the erased concept this step trained on
INFO_FOUND = "found"  # str: EAP's current adversarial concept or AGE's current target (absent for ESD/UCE)
INFO_PREVIEW = "preview"  # torch.Tensor [C, H, W]: the erased prompt's training latent (every `preview_every` steps)
INFO_PHASE = "phase"  # str: "search" (vocabulary encoding), "train", "audit"
INFO_UNET_EVALS = "unet_evals"  # int: UNet evaluations spent so far in training (see TrainingContext)
INFO_ERASURE = "erasure"  # dict[str, float]: each erased concept's measured erasure, on the steps it is measured


def _no_progress(step: int, total: int, info: dict[str, Any]) -> None:
    return None


def _never() -> bool:
    return False


@dataclass
class Callbacks:
    """Hooks for a host. Both default to doing nothing.

    Attributes:
        on_step: called as `on_step(step, total, info)` after each step (step counts from 1).
        should_stop: polled before each step and between any two UNet evaluations or vocabulary chunks in every
            other phase (see `cancel`); returning True cancels the run (`Cancelled` is raised, the model is
            restored, nothing is written).
        preview_every: put the current training latent into `info` every this many steps (0 = never).
    """

    on_step: Callable[[int, int, dict[str, Any]], None] = _no_progress
    should_stop: Callable[[], bool] = _never
    preview_every: int = 0
