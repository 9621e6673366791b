"""EAP: Erasing with Adversarial Preservation (Bui et al., NeurIPS 2024), algorithms.md §2.

One training step = one parameter step, then one logit step (pgd_num_steps = 2, ref §2.3):
- parameter step: ESD's erasure loss plus preservation of the adversarial concept c_a, which the search currently
  says the edit hurts most; both in x0-space by default;
- logit step: on a fresh latent, ascend the gap between the edited and the original model at c_a.
"""

from __future__ import annotations

from typing import Any

import torch

from ..backends.base import Conditioning
from ..callbacks import INFO_CONCEPT, INFO_FOUND, INFO_LOSS
from ..context import TrainingContext
from ..latent_pool import PoolPrompt
from .esd import negative_guidance_target
from .search import SearchState, prepare_search, sample_weights, search_prompt


def prepare(ctx: TrainingContext) -> SearchState:
    return prepare_search(ctx)


def train_step(ctx: TrainingContext, state: SearchState) -> dict[str, Any]:
    p, c = ctx.prompts, ctx.config
    index = ctx.pick_erased()
    erased, search = p.erased_conds.select(index), state.searches[index]

    # Parameter step (ref §2.3 step 5): x_e and x_a share z_T.
    found = search_prompt(ctx, state, index, sample_weights(ctx, state, index))
    adversarial = found.cond.detach()
    draws = ctx.draw()
    sampled = ctx.latents_with_predictions([PoolPrompt(("erased", index), erased), found], draws)
    x_e, x_a = sampled.x.chunk(2)
    with torch.no_grad():
        if (known := ctx.pooled_anchor_and_erased(sampled)) is not None:  # the erasure target's parts
            eps_anchor, eps_erased = known
            eps_adv = ctx.predict(x_a, draws, adversarial, edited=False)
        else:
            eps_anchor, eps_erased, eps_adv = ctx.predict(
                torch.cat([x_e, x_e, x_a]), draws, Conditioning.cat([p.anchor, erased, adversarial]), edited=False
            ).chunk(3)
        target = negative_guidance_target(eps_anchor, eps_erased, ctx.eta(index))
    edited_e, edited_a = ctx.predict(
        torch.cat([x_e, x_a]), draws, Conditioning.cat([erased, adversarial]), edited=True
    ).chunk(2)
    loss = ctx.mse(edited_e, target, draws) + c.preserve_weight * ctx.mse(edited_a, eps_adv, draws)
    loss = loss + ctx.keep_loss(x_e, draws) + ctx.robust_loss(index, x_e, draws, target, eps_erased)
    loss = ctx.update_params(loss)

    # Logit step (ref §2.3 step 6): maximise the edit's effect on c_a; gradients reach the logits through c_a.
    weights = sample_weights(ctx, state, index)
    found = search_prompt(ctx, state, index, weights)
    adversarial = found.cond
    draws = ctx.draw()
    x_a = ctx.latents([found], draws)
    with torch.no_grad():
        eps_adv = ctx.predict(x_a, draws, adversarial.detach(), edited=False)
    gap = ctx.mse(ctx.predict(x_a, draws, adversarial, edited=True), eps_adv, draws)
    ctx.update_search(-gap, state.optimizer)
    return {INFO_LOSS: loss, INFO_CONCEPT: p.erased[index], INFO_FOUND: search.words[int(weights.argmax())]}
