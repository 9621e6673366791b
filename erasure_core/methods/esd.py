"""ESD: Erasing Concepts from Diffusion Models (Gandikota et al., ICCV 2023), algorithms.md §1.

The edited model's prediction for the erased concept is pulled to the original model's negatively guided
prediction: eps*(anchor) - eta * (eps*(c_e) - eps*(anchor)), the anchor being "" or a prompt the user gives.
"""

from __future__ import annotations

from typing import Any

import torch

from ..backends.base import Conditioning
from ..callbacks import INFO_CONCEPT, INFO_LOSS
from ..context import TrainingContext
from ..latent_pool import PoolPrompt


def negative_guidance_target(eps_anchor: torch.Tensor, eps_erased: torch.Tensor, eta: float) -> torch.Tensor:
    """ESD's target (ref §1): guidance away from the erased concept, starting from the anchor."""
    return eps_anchor - eta * (eps_erased - eps_anchor)


def prepare(ctx: TrainingContext) -> None:
    return None


def train_step(ctx: TrainingContext, state: Any) -> dict[str, Any]:
    p = ctx.prompts
    index = ctx.pick_erased()
    erased = p.erased_conds.select(index)
    draws = ctx.draw()
    sampled = ctx.latents_with_predictions([PoolPrompt(("erased", index), erased)], draws)
    x = sampled.x
    with torch.no_grad():
        if (known := ctx.pooled_anchor_and_erased(sampled)) is not None:  # no UNet call
            eps_anchor, eps_erased = known
        else:
            eps_anchor, eps_erased = ctx.predict(
                torch.cat([x, x]), draws, Conditioning.cat([p.anchor, erased]), edited=False
            ).chunk(2)
        target = negative_guidance_target(eps_anchor, eps_erased, ctx.eta(index))
    loss = ctx.mse(ctx.predict(x, draws, erased, edited=True), target, draws)
    loss = loss + ctx.keep_loss(x, draws) + ctx.robust_loss(index, x, draws, target, eps_erased)
    return {INFO_LOSS: ctx.update_params(loss), INFO_CONCEPT: p.erased[index]}
