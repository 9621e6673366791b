"""AGE: Adaptive Guided Erasure (Bui et al., ICLR 2025), algorithms.md §3.

ESD with the unconditional anchor replaced by a learned target c_t, a Gumbel-softmax mixture of concepts near the
erased one, which is preserved at the same time (weight lambda = `preserve_weight`):
    min_theta  L1(c_e -> c_t) + lambda * L2(c_t),   c_t = argmax_c [L1 + lambda * L2]   (paper Eq. 4-5)
The logit step follows the paper: L1's gradient reaches c_t through the original model's conditioning input. The
reference code detaches that term (so only L2 drives the search); `detached_erasure_term=True` reproduces it.

The reference alternates a parameter step and a logit step, each on latents of its own (`joint_step=False`).
`joint_step=True` takes both from one latent and one set of predictions: the LoRA descends the training loss and
the logits ascend the search objective, both from the same backward pass before either update. The two losses share
L2, and L1's search form only adds the original model's prediction at c_t, which the training target needs anyway;
so a step costs three UNet forwards and their backwards instead of seven forwards and five backwards.
"""

from __future__ import annotations

from typing import Any

import torch

from ..backends.base import Conditioning
from ..callbacks import INFO_CONCEPT, INFO_FOUND, INFO_LOSS
from ..context import Draws, TrainingContext
from ..latent_pool import PoolPrompt
from .esd import negative_guidance_target
from .search import SearchState, prepare_search, sample_weights, search_prompt


def prepare(ctx: TrainingContext) -> SearchState:
    return prepare_search(ctx)


def train_step(ctx: TrainingContext, state: SearchState) -> dict[str, Any]:
    return joint_step(ctx, state) if ctx.config.resolved_joint_step() else alternating_step(ctx, state)


def _step_latents(
    ctx: TrainingContext, index: int, erased: Conditioning, target: PoolPrompt, draws: Draws, fresh_erased: bool
) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None]:
    """x_e from c_e and x_t' from c_t with the same z_T, and the pool's eps(x_e, ""), eps(x_e, c_e) if it has them.
    `fresh_erased` (the alternating schedule's `pool_search_only`): x_e sampled fresh, c_t preserved on it."""
    if fresh_erased and ctx.pool is not None:
        sampled = ctx.latents_with_predictions([PoolPrompt(None, erased)], draws)
        return sampled.x, sampled.x, sampled.original[0]
    sampled = ctx.latents_with_predictions([PoolPrompt(("erased", index), erased), target], draws)
    x_e, x_t = sampled.x.chunk(2)
    return x_e, x_t, sampled.original[0]


def joint_step(ctx: TrainingContext, state: SearchState) -> dict[str, Any]:
    """One latent, one forward and one backward for both updates (`joint_step=True`)."""
    p, c = ctx.prompts, ctx.config
    index = ctx.pick_erased()
    erased, search = p.erased_conds.select(index), state.searches[index]
    lam = c.preserve_weight

    weights = sample_weights(ctx, state, index)
    target = search_prompt(ctx, state, index, weights)
    target_cond = target.cond  # differentiable in the logits
    draws = ctx.draw()
    x_e, x_t, known = _step_latents(ctx, index, erased, target, draws, fresh_erased=False)
    shared = torch.equal(x_e, x_t)
    with torch.no_grad():
        eps_erased = known[1] if known is not None else ctx.predict(x_e, draws, erased, edited=False)
        eps_target_t = None if shared else ctx.predict(x_t, draws, target_cond.detach(), edited=False)
    # The original model at (x_e, c_t): the training target's anchor and, unless detached, L1's search gradient.
    with torch.set_grad_enabled(not c.detached_erasure_term):
        original_e = ctx.predict(x_e, draws, target_cond, edited=False)
    if shared:
        eps_target_t = original_e.detach()
    edited_e, edited_t = ctx.predict(
        torch.cat([x_e, x_t]), draws, Conditioning.cat([erased, target_cond]), edited=True
    ).chunk(2)
    erase_target = negative_guidance_target(original_e.detach(), eps_erased, ctx.eta(index))
    loss = ctx.mse(edited_e, erase_target, draws) + lam * ctx.mse(edited_t, eps_target_t, draws)
    loss = loss + ctx.keep_loss(x_e, draws)
    # The search ascends L1 + L2. L2 reaches the logits through `loss` already; L1 as the search sees it (the edited
    # prediction held, c_t's original one moving) has no LoRA gradient, so it joins the same backward pass.
    search_term = 0.0 if c.detached_erasure_term else ctx.mse(edited_e.detach(), original_e, draws)
    loss = ctx.update_jointly(loss, search_term, state.optimizer)
    return {INFO_LOSS: loss, INFO_CONCEPT: p.erased[index], INFO_FOUND: search.words[int(weights.argmax())]}


def alternating_step(ctx: TrainingContext, state: SearchState) -> dict[str, Any]:
    """The reference's schedule: a parameter step, then a logit step on latents of its own."""
    p, c = ctx.prompts, ctx.config
    index = ctx.pick_erased()
    erased, search = p.erased_conds.select(index), state.searches[index]
    lam = c.preserve_weight

    # Parameter step (ref §3.1): x_e from c_e and x_t' from c_t share z_T.
    target = search_prompt(ctx, state, index, sample_weights(ctx, state, index))
    target_cond = target.cond.detach()
    draws = ctx.draw()
    x_e, x_t, known = _step_latents(ctx, index, erased, target, draws, c.pool_search_only)
    shared = torch.equal(x_e, x_t)  # one latent for both (search-only, or `pool_candidates=0`): c_t's agree
    rows, conds = ([x_e], [target_cond]) if shared else ([x_e, x_t], [target_cond, target_cond])
    if known is None:
        rows, conds = [*rows, x_e], [*conds, erased]
    with torch.no_grad():
        original = ctx.predict(torch.cat(rows), draws, Conditioning.cat(conds), edited=False).chunk(len(rows))
        eps_target_e, eps_target_t = original[0], original[0 if shared else 1]
        eps_erased = known[1] if known is not None else original[-1]
        target = negative_guidance_target(eps_target_e, eps_erased, ctx.eta(index))
    edited_e, edited_t = ctx.predict(
        torch.cat([x_e, x_t]), draws, Conditioning.cat([erased, target_cond]), edited=True
    ).chunk(2)
    loss = ctx.mse(edited_e, target, draws) + lam * ctx.mse(edited_t, eps_target_t, draws)
    loss = ctx.update_params(loss + ctx.keep_loss(x_e, draws))

    # Logit step: ascend L1 + lambda * L2 on fresh latents.
    weights = sample_weights(ctx, state, index)
    target = search_prompt(ctx, state, index, weights)
    target_cond = target.cond
    draws = ctx.draw()
    x_e, x_t = ctx.latents([PoolPrompt(("erased", index), erased), target], draws).chunk(2)
    shared = torch.equal(x_e, x_t) and not c.detached_erasure_term
    with torch.no_grad():
        edited_e = ctx.predict(x_e, draws, erased, edited=True)
        eps_target_t = None if shared else ctx.predict(x_t, draws, target_cond.detach(), edited=False)
    objective = 0.0
    if not c.detached_erasure_term:
        # L1: distance of the edited erased prediction from the original model at c_t, differentiable in c_t.
        original_e = ctx.predict(x_e, draws, target_cond, edited=False)
        objective = ctx.mse(edited_e, original_e, draws)
        if shared:  # the same prediction serves as L2's target
            eps_target_t = original_e.detach()
    objective = objective + lam * ctx.mse(ctx.predict(x_t, draws, target_cond, edited=True), eps_target_t, draws)
    ctx.update_search(-objective, state.optimizer)
    return {INFO_LOSS: loss, INFO_CONCEPT: p.erased[index], INFO_FOUND: search.words[int(weights.argmax())]}
