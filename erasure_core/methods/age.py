"""AGE: Adaptive Guided Erasure (Bui et al., ICLR 2025), algorithms.md §3.

ESD with the unconditional anchor replaced by a learned target c_t, a Gumbel-softmax mixture of concepts near the
erased one, which is preserved at the same time (weight lambda = `preserve_weight`):
    min_theta  L1(c_e -> c_t) + lambda * L2(c_t),   c_t = argmax_c [L1 + lambda * L2]   (paper Eq. 4-5)
The logit step follows the paper: L1's gradient reaches c_t through the original model's conditioning input. The
reference code detaches that term (so only L2 drives the search); `detached_erasure_term=True` reproduces it.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ..backends.base import Conditioning
from ..callbacks import INFO_CONCEPT, INFO_FOUND, INFO_LOSS
from ..context import TrainingContext
from .esd import negative_guidance_target
from .search import SearchState, prepare_search, sample_weights


def prepare(ctx: TrainingContext) -> SearchState:
    return prepare_search(ctx)


def train_step(ctx: TrainingContext, state: SearchState) -> dict[str, Any]:
    p, c = ctx.prompts, ctx.config
    index = ctx.pick_erased()
    erased, search = p.erased_conds.select(index), state.searches[index]
    lam = c.preserve_weight

    # Parameter step (ref §3.1): x_e from c_e and x_t' from c_t share z_T.
    target_cond = search.embed(sample_weights(ctx, search)).detach()
    draw = ctx.draw()
    x_e, x_t = ctx.sample_latents(Conditioning.cat([erased, target_cond]), ctx.noise().repeat(2, 1, 1, 1), draw).chunk(
        2
    )
    with torch.no_grad():
        eps_target_e, eps_erased, eps_target_t = ctx.predict(
            torch.cat([x_e, x_e, x_t]), draw.t, Conditioning.cat([target_cond, erased, target_cond]), edited=False
        ).chunk(3)
        target = negative_guidance_target(eps_target_e, eps_erased, ctx.eta(index))
    edited_e, edited_t = ctx.predict(
        torch.cat([x_e, x_t]), draw.t, Conditioning.cat([erased, target_cond]), edited=True
    ).chunk(2)
    loss = ctx.weight(draw) * (F.mse_loss(edited_e, target) + lam * F.mse_loss(edited_t, eps_target_t))
    loss = ctx.update_params(loss + ctx.keep_loss(x_e, draw))

    # Logit step: ascend L1 + lambda * L2 on fresh latents.
    weights = sample_weights(ctx, search)
    target_cond = search.embed(weights)
    draw = ctx.draw()
    x_e, x_t = ctx.sample_latents(
        Conditioning.cat([erased, target_cond.detach()]), ctx.noise().repeat(2, 1, 1, 1), draw
    ).chunk(2)
    with torch.no_grad():
        edited_e = ctx.predict(x_e, draw.t, erased, edited=True)
        eps_target_t = ctx.predict(x_t, draw.t, target_cond.detach(), edited=False)
    preserve_gap = F.mse_loss(ctx.predict(x_t, draw.t, target_cond, edited=True), eps_target_t)
    objective = lam * preserve_gap
    if not c.detached_erasure_term:
        # L1: distance of the edited erased prediction from the original model at c_t, differentiable in c_t.
        objective = objective + F.mse_loss(edited_e, ctx.predict(x_e, draw.t, target_cond, edited=False))
    ctx.update_search(-ctx.weight(draw) * objective, state.optimizer)
    return {INFO_LOSS: loss, INFO_CONCEPT: p.erased[index], INFO_FOUND: search.words[int(weights.argmax())]}
