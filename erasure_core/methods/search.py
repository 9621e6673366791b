"""Set-up shared by EAP and AGE: one Gumbel-softmax concept search per erased concept, and its optimiser."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .. import distance_cache
from ..adversarial import ConceptSearch
from ..backends.base import host_cache_folder
from ..candidates import find_candidates
from ..context import TrainingContext
from ..defaults import AGE_TARGET_DRAWS
from ..latent_pool import PoolPrompt


@dataclass
class SearchState:
    searches: list[ConceptSearch]  # aligned with ctx.prompts.erased
    optimizer: torch.optim.Optimizer
    subsets: dict[int, tuple[int, torch.Tensor]] = field(default_factory=dict)  # index -> (pool period, mask)

    def found(self, n: int = 5) -> dict[str, list[str]]:
        return {s.concept: s.ranked(n) for s in self.searches}

    def neighbours(self) -> dict[str, list[str]]:
        """The found concepts a user may be shown as neighbours (`ConceptSearch.neighbours`)."""
        return {s.concept: s.neighbours() for s in self.searches}

    def targets(self, draws: int = AGE_TARGET_DRAWS, seed: int = 0) -> dict[str, list[tuple[str, float]]]:
        """AGE: each concept's target as the audit and the stopping check measure it (`target_mixture`); the same
        draws for the same logits."""
        generator = torch.Generator().manual_seed(seed)
        return {s.concept: s.target_mixture(draws, generator) for s in self.searches}


def prepare_search(ctx: TrainingContext) -> SearchState:
    """Candidate words per erased concept (ref §2.1), their encodings, and Adam on the logits (ref §2.5)."""
    c, p, backend = ctx.config, ctx.prompts, ctx.backend
    vocabulary = list(c.vocabulary) if c.vocabulary else backend.vocabulary()[: c.vocabulary_limit]
    candidates = find_candidates(
        backend.encode_prompts,
        p.erased,
        p.erased_conds,
        vocabulary,
        c.k_closest,
        c.num_centers,
        c.exclude_erased_words,
        distance_cache.cache_dir(host_cache_folder(backend)),
    )
    searches = [
        ConceptSearch(concept, found.words, backend.encode_prompts(found.words), found.distinct)
        for concept, found in candidates.items()
    ]
    optimizer = torch.optim.Adam([s.logits for s in searches], lr=c.gumbel_lr)
    return SearchState(searches, optimizer)


def sample_weights(ctx: TrainingContext, state: SearchState, index: int) -> torch.Tensor:
    """Gumbel-softmax weights over erased concept `index`'s candidates (within this pool period's subset)."""
    c = ctx.config
    search = state.searches[index]
    return search.sample(
        c.gumbel_temperature, c.gumbel_hard, c.gumbel_top_k, ctx.generator, _subset(ctx, state, index)
    )


def search_prompt(ctx: TrainingContext, state: SearchState, index: int, weights: torch.Tensor) -> PoolPrompt:
    """The found concept as a latent-pool prompt: keyed by its word when the sample is one word (hard Gumbel)."""
    search = state.searches[index]
    cond = search.embed(weights)
    if ctx.pool is not None and ctx.config.pool_candidates == 0:
        return PoolPrompt(("erased", index), cond)  # preserved on the erased concept's latents
    key = ("candidate", index, int(weights.argmax())) if ctx.config.gumbel_hard else None
    return PoolPrompt(key, cond, shared=False)


def _subset(ctx: TrainingContext, state: SearchState, index: int) -> torch.Tensor | None:
    """The candidates drawable in the current pool period (None without a pool: all of them, as the reference)."""
    if ctx.pool is None or not ctx.config.gumbel_hard or ctx.config.pool_candidates == 0:
        return None
    period, mask = state.subsets.get(index, (-1, None))
    if period != ctx.pool.period:
        search = state.searches[index]
        mask = search.draw_subset(ctx.config.pool_candidates, ctx.generator)
        state.subsets[index] = (ctx.pool.period, mask)
        # The period's trajectories for the erased concept and every drawable word, in one batched sampling.
        words = [
            PoolPrompt(("candidate", index, int(w)), search.encodings.select(int(w)), shared=False)
            for w in mask.nonzero()
        ]
        ctx.pool.prefetch([PoolPrompt(("erased", index), ctx.prompts.erased_conds.select(index)), *words])
    return mask
