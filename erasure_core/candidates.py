"""Candidate concepts for EAP's adversarial search and AGE's target search (algorithms.md §2.1, §3.1).

For each erased concept: encode every vocabulary word as its own prompt, keep the `k_closest` words nearest in
L2 distance between the flattened encodings, then spread them over the distance range with a 1-D k-means on the
distance values (one word per centre), so the set covers very close to fairly far concepts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from . import distance_cache
from .backends.base import Conditioning
from .errors import ConfigError

logger = logging.getLogger(__name__)

_VOCAB_CHUNK = 256  # words encoded per pass; only their distances are kept, never the whole vocabulary's encodings


def vocabulary_distances(
    encode: Callable[[Sequence[str]], Conditioning], concepts: Conditioning, words: Sequence[str]
) -> torch.Tensor:
    """L2 distances `[len(concepts), len(words)]` between flattened encodings, computed chunk by chunk."""
    targets = concepts.flat().float()
    out = []
    for start in range(0, len(words), _VOCAB_CHUNK):
        chunk = encode(words[start : start + _VOCAB_CHUNK]).flat().float()
        out.append(torch.cdist(targets, chunk.to(targets.device)))
    return torch.cat(out, dim=1).cpu()


def kmeans_1d(values: torch.Tensor, k: int, iterations: int = 100) -> torch.Tensor:
    """Lloyd's k-means on scalars with centres started at evenly spaced quantiles (deterministic)."""
    values = values.double()
    centres = torch.quantile(values, torch.linspace(0, 1, k, dtype=torch.float64))
    for _ in range(iterations):
        assign = (values[:, None] - centres[None]).abs().argmin(1)
        new = centres.clone()
        for j in range(k):
            members = values[assign == j]
            if members.numel():
                new[j] = members.mean()
        if torch.allclose(new, centres):
            break
        centres = new
    return centres


def pick_candidates(
    distances: torch.Tensor, words: Sequence[str], k_closest: int, num_centers: int, exclude: Sequence[str] = ()
) -> list[str]:
    """The candidate words of one concept from its distance row, nearest first (ref §2.1 steps 4-5)."""
    banned = {w.lower() for w in exclude}
    order = [int(i) for i in distances.argsort() if words[int(i)].lower() not in banned]
    nearest = order[:k_closest]
    if not nearest:
        raise ConfigError("No candidate words are left for the concept search; give a larger vocabulary.")
    if len(nearest) <= num_centers:
        return [words[i] for i in nearest]
    values = distances[nearest]
    chosen: list[int] = []
    for centre in kmeans_1d(values, num_centers):
        i = nearest[int((values.double() - centre).abs().argmin())]
        if i not in chosen:
            chosen.append(i)
    chosen.sort(key=lambda i: float(distances[i]))
    return [words[i] for i in chosen]


def find_candidates(
    encode: Callable[[Sequence[str]], Conditioning],
    concepts: Sequence[str],
    concept_conds: Conditioning,
    vocabulary: Sequence[str],
    k_closest: int,
    num_centers: int,
    exclude_concepts: bool,
    cache: Path | None = None,
) -> dict[str, list[str]]:
    """Candidate words per erased concept. The vocabulary is encoded once for all concepts whose distances are not
    in `cache` (a `distance_cache` folder; None = no cache)."""
    if not vocabulary:
        raise ConfigError(
            "The candidate vocabulary is empty; give a word list or use a model whose tokenizer has words."
        )
    distances = concept_distances(encode, concept_conds, vocabulary, cache)
    exclude = [w for c in concepts for w in (c, *c.split())] if exclude_concepts else []
    return {
        concept: pick_candidates(distances[row], vocabulary, k_closest, num_centers, exclude)
        for row, concept in enumerate(concepts)
    }


def concept_distances(
    encode: Callable[[Sequence[str]], Conditioning], concepts: Conditioning, words: Sequence[str], cache: Path | None
) -> torch.Tensor:
    """`vocabulary_distances`, reading and writing each concept's row through the cache when there is one."""
    if cache is None:
        logger.info("Encoding %d vocabulary words for the concept search", len(words))
        return vocabulary_distances(encode, concepts, words)
    flat = concepts.flat()
    keys = [distance_cache.row_key(flat[i], words) for i in range(len(concepts))]
    rows = [distance_cache.load_row(cache, key, len(words)) for key in keys]
    if missing := [i for i, row in enumerate(rows) if row is None]:
        logger.info("Encoding %d vocabulary words for the concept search (cached in %s)", len(words), cache)
        computed = vocabulary_distances(encode, concepts.select(torch.tensor(missing)), words)
        for j, i in enumerate(missing):
            rows[i] = computed[j]
            distance_cache.save_row(cache, keys[i], computed[j])
    return torch.stack(rows)
