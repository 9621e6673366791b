"""The Gumbel-softmax concept search shared by EAP (adversarial concept) and AGE (target concept).

Each erased concept owns learnable logits over its candidate words (initialised to the constant 1/n, ref §2.1).
A sample is a straight-through one-hot vector (hard, ref §2.2) or a renormalised soft top-k mixture (AGE, ref §3.1);
the concept embedding is that vector times the stacked candidate encodings, so gradients reach the logits.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from .backends.base import Conditioning


def gumbel_noise(shape: torch.Size, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    u = torch.rand(shape, generator=generator).to(device)
    return -torch.log(-torch.log(u + 1e-10) + 1e-10)  # ref §2.2


def gumbel_sample(
    logits: torch.Tensor,
    temperature: float,
    hard: bool,
    top_k: int,
    generator: torch.Generator,
    allowed: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mixture weights over candidates; differentiable w.r.t. `logits` (straight-through when `hard`).

    `allowed` (bool mask) restricts the sample to some candidates, as if the others had logit minus infinity.
    """
    gumbel = gumbel_noise(logits.shape, generator, logits.device)
    if allowed is not None:
        logits = logits.masked_fill(~allowed, float("-inf"))
    soft = torch.softmax((logits + gumbel) / temperature, dim=-1)
    if hard:
        one_hot = torch.zeros_like(soft).scatter_(-1, soft.argmax(-1, keepdim=True), 1.0)
        return one_hot - soft.detach() + soft
    k = min(top_k, soft.shape[-1])
    mask = torch.zeros_like(soft).scatter_(-1, soft.topk(k, dim=-1).indices, 1.0)
    kept = soft * mask
    return kept / kept.sum(-1, keepdim=True)


@dataclass
class ConceptSearch:
    """Logits over the candidate words of one erased concept, with their stacked encodings."""

    concept: str
    words: list[str]
    encodings: Conditioning
    distinct: list[str] = field(default_factory=list)  # the words the text encoder tells from noise (`candidates`)
    logits: nn.Parameter = field(init=False)

    def __post_init__(self) -> None:
        n = len(self.words)
        device = self.encodings.context.device
        self.logits = nn.Parameter(torch.full((n,), 1.0 / n, device=device))

    def sample(
        self,
        temperature: float,
        hard: bool,
        top_k: int,
        generator: torch.Generator,
        allowed: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return gumbel_sample(self.logits, temperature, hard, top_k, generator, allowed)

    def draw_subset(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """A mask of n candidates drawn without replacement with probability softmax(logits) (Gumbel top-n)."""
        scores = self.logits.detach() + gumbel_noise(self.logits.shape, generator, self.logits.device)
        mask = torch.zeros_like(scores, dtype=torch.bool)
        mask[scores.topk(min(n, scores.numel())).indices] = True
        return mask

    def embed(self, weights: torch.Tensor) -> Conditioning:
        return self.encodings.mix(weights)

    def ranked(self, n: int = 5) -> list[str]:
        """Candidates by learned logit, highest first: the concepts the search settled on."""
        order = torch.argsort(self.logits.detach(), descending=True)[:n]
        return [self.words[int(i)] for i in order]

    def neighbours(self, n: int = 3) -> list[str]:
        """The highest-ranked candidates that are real neighbours of the concept (`distinct`), for a user to see."""
        return [w for w in self.ranked(len(self.words)) if w in self.distinct][:n]

    def target_mixture(self, draws: int, generator: torch.Generator) -> list[tuple[str, float]]:
        """The target a hard Gumbel-max step steers to, estimated: `draws` candidates drawn from softmax(logits), as
        the steps draw them, each weighted by its share of the draws, most drawn first. Its expected prediction is
        the expected target of a step, whatever the spread of the distribution."""
        probs = torch.softmax(self.logits.detach().float(), dim=-1).cpu()
        counts = torch.bincount(
            torch.multinomial(probs, draws, replacement=True, generator=generator), minlength=probs.numel()
        )
        order = torch.argsort(counts, descending=True, stable=True)
        return [(self.words[int(i)], int(counts[i]) / draws) for i in order if counts[i] > 0]
