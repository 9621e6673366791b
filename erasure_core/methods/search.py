"""Set-up shared by EAP and AGE: one Gumbel-softmax concept search per erased concept, and its optimiser."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..adversarial import ConceptSearch
from ..candidates import find_candidates
from ..context import TrainingContext


@dataclass
class SearchState:
    searches: list[ConceptSearch]  # aligned with ctx.prompts.erased
    optimizer: torch.optim.Optimizer

    def found(self, n: int = 5) -> dict[str, list[str]]:
        return {s.concept: s.ranked(n) for s in self.searches}

    def targets(self, n: int = 5) -> dict[str, list[tuple[str, float]]]:
        return {s.concept: s.distribution(n) for s in self.searches}


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
    )
    searches = [ConceptSearch(concept, words, backend.encode_prompts(words)) for concept, words in candidates.items()]
    optimizer = torch.optim.Adam([s.logits for s in searches], lr=c.gumbel_lr)
    return SearchState(searches, optimizer)


def sample_weights(ctx: TrainingContext, search: ConceptSearch) -> torch.Tensor:
    c = ctx.config
    return search.sample(c.gumbel_temperature, c.gumbel_hard, c.gumbel_top_k, ctx.generator)
