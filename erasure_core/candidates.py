"""Candidate concepts for EAP's adversarial search and AGE's target search (algorithms.md §2.1, §3.1).

For each erased concept: encode every vocabulary word as its own prompt, keep the `k_closest` words nearest in
L2 distance between the flattened encodings, then spread them over the distance range with a 1-D k-means on the
distance values (one word per centre), so the set covers very close to fairly far concepts.

Encoding the vocabulary is the search's whole set-up cost; where bfloat16 is faster, it ranks the vocabulary and
only the words that can be among the nearest are encoded in float32, which gives the same candidates.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from . import distance_cache
from .backends.base import Conditioning
from .cancel import checkpoint
from .errors import ConfigError

logger = logging.getLogger(__name__)

_VOCAB_CHUNK = 256  # words encoded per pass; only their distances are kept, never the whole vocabulary's encodings
# bfloat16 ranking (see `vocabulary_distances`): used only where the first chunk encodes at least this much faster
# (a CPU without bfloat16 units emulates it slowly), and every word within this many times the largest bfloat16
# error seen on that chunk of a concept's `exact_nearest`-th distance is encoded again in full precision.
_LOW_PRECISION_MIN_SPEEDUP = 1.5
_LOW_PRECISION_MARGIN = 2.0

# A candidate is told from noise when its distance to the concept lies this many standard deviations below the
# vocabulary's mean distance (ours: the usual three-sigma rule, not tuned). The candidate set spans near to fairly far
# words on purpose; the far ones are no nearer to the concept than a random word is ("disaster" for "apple" on the
# demo model, 0.95 deviations), so they are trained on but never shown to a user as the concept's neighbours.
NOISE_Z = 3.0

Encode = Callable[[Sequence[str]], Conditioning]


@dataclass(frozen=True)
class Candidates:
    """One erased concept's candidate words, nearest first, and those of them the text encoder tells from noise."""

    words: list[str]
    distinct: list[str]


def vocabulary_distances(
    encode: Encode,
    concepts: Conditioning,
    words: Sequence[str],
    exact_nearest: int | None = None,
    low_precision: bool | None = None,
) -> tuple[torch.Tensor, int | None]:
    """L2 distances `[len(concepts), len(words)]` between flattened encodings, computed chunk by chunk, and how
    many of each row's nearest are exact (None: all).

    The search only uses each concept's nearest words (`pick_candidates`), so with `exact_nearest` only those need
    exact distances: the vocabulary is ranked with a bfloat16 encoding (4x faster on a CPU with bfloat16 units),
    and every word that could be among the `exact_nearest` nearest is encoded again in full precision. Farther
    words keep their bfloat16 distances. `low_precision`: None = where the first chunk shows that it pays.
    """
    targets = concepts.flat().float()
    device = targets.device.type
    small = exact_nearest is None or exact_nearest >= len(words) or len(words) <= _VOCAB_CHUNK
    if small or device not in ("cpu", "cuda") or low_precision is False:
        return _distances(encode, targets, words), None
    first = words[:_VOCAB_CHUNK]
    start = time.perf_counter()
    exact_first = _distances(encode, targets, first)
    exact_s = time.perf_counter() - start
    start = time.perf_counter()
    try:
        approx_first = _distances(encode, targets, first, low_precision=True)
    except RuntimeError:  # an encoder that cannot run under autocast
        if low_precision:
            raise
        approx_first = None
    slow = approx_first is None or (time.perf_counter() - start) * _LOW_PRECISION_MIN_SPEEDUP > exact_s
    if low_precision is None and slow:
        return torch.cat([exact_first, _distances(encode, targets, words[len(first) :])], dim=1), None
    error = float((approx_first - exact_first).abs().max())
    distances = torch.cat([exact_first, _distances(encode, targets, words[len(first) :], low_precision=True)], 1)
    bound = distances.kthvalue(exact_nearest, dim=1, keepdim=True).values + _LOW_PRECISION_MARGIN * error
    near = (distances <= bound).any(0)
    near[: len(first)] = False  # exact already
    again = near.nonzero().flatten().tolist()
    logger.info("Ranked the vocabulary in bfloat16; encoding its %d nearest words again in float32", len(again))
    if again:
        distances[:, again] = _distances(encode, targets, [words[i] for i in again])
    return distances, exact_nearest


def _distances(
    encode: Encode, targets: torch.Tensor, words: Sequence[str], low_precision: bool = False
) -> torch.Tensor:
    out = []
    for start in range(0, len(words), _VOCAB_CHUNK):
        checkpoint("search")
        with _autocast(targets.device.type, low_precision):
            chunk = encode(words[start : start + _VOCAB_CHUNK]).flat().float()
        out.append(torch.cdist(targets, chunk.to(targets.device)))
    return torch.cat(out, dim=1).cpu() if out else torch.zeros(len(targets), 0)


def _autocast(device: str, low_precision: bool) -> contextlib.AbstractContextManager:
    return torch.autocast(device, dtype=torch.bfloat16) if low_precision else contextlib.nullcontext()


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


def distinct_words(distances: torch.Tensor, words: Sequence[str], chosen: Sequence[str]) -> list[str]:
    """The `chosen` words (in their order) whose distance stands out from the row's (`NOISE_Z`)."""
    row = distances.double()
    floor = row.mean() - NOISE_Z * row.std()
    index = {w: i for i, w in enumerate(words)}
    return [w for w in chosen if float(row[index[w]]) <= float(floor)]


def inflections(word: str) -> set[str]:
    """`word` and its plural, singular and possessive forms ("car": car, cars, car's; "cherries": cherry ...)."""
    w = word.lower()
    forms = {w, w + "s", w + "es", w + "'s", w + "s'"}
    if w.endswith("y") and len(w) > 2:
        forms.add(w[:-1] + "ies")
    if w.endswith("ies") and len(w) > 4:
        forms.add(w[:-3] + "y")
    if w.endswith("es") and len(w) > 3:
        forms.add(w[:-2])
    if w.endswith("s") and len(w) > 2:
        forms.add(w[:-1])
    return forms


def banned_words(concepts: Sequence[str]) -> set[str]:
    """Words no concept search may pick: every erased concept, each of its words, and their inflections, so that
    one concept's search never preserves or steers to another erased concept ("cars" while "car" is erased)."""
    return {form for c in concepts for word in (c, *c.split()) for form in inflections(word)}


def find_candidates(
    encode: Callable[[Sequence[str]], Conditioning],
    concepts: Sequence[str],
    concept_conds: Conditioning,
    vocabulary: Sequence[str],
    k_closest: int,
    num_centers: int,
    exclude_concepts: bool,
    cache: Path | None = None,
) -> dict[str, Candidates]:
    """Candidate words per erased concept. The vocabulary is encoded once for all concepts whose distances are not
    in `cache` (a `distance_cache` folder; None = no cache)."""
    if not vocabulary:
        raise ConfigError(
            "The candidate vocabulary is empty; give a word list or use a model whose tokenizer has words."
        )
    banned = banned_words(concepts) if exclude_concepts else set()
    exact_nearest = k_closest + sum(w.lower() in banned for w in vocabulary)  # what `pick_candidates` can reach
    distances = concept_distances(encode, concept_conds, vocabulary, cache, exact_nearest)
    found = {}
    for row, concept in enumerate(concepts):
        words = pick_candidates(distances[row], vocabulary, k_closest, num_centers, sorted(banned))
        found[concept] = Candidates(words, distinct_words(distances[row], vocabulary, words))
    return found


def concept_distances(
    encode: Encode, concepts: Conditioning, words: Sequence[str], cache: Path | None, exact_nearest: int | None = None
) -> torch.Tensor:
    """`vocabulary_distances`, reading and writing each concept's row through the cache when there is one."""
    if cache is None:
        logger.info("Encoding %d vocabulary words for the concept search", len(words))
        return vocabulary_distances(encode, concepts, words, exact_nearest)[0]
    flat = concepts.flat()
    keys = [distance_cache.row_key(flat[i], words) for i in range(len(concepts))]
    rows = [distance_cache.load_row(cache, key, len(words), exact_nearest) for key in keys]
    if missing := [i for i, row in enumerate(rows) if row is None]:
        logger.info("Encoding %d vocabulary words for the concept search (cached in %s)", len(words), cache)
        computed, exact = vocabulary_distances(encode, concepts.select(torch.tensor(missing)), words, exact_nearest)
        for j, i in enumerate(missing):
            rows[i] = computed[j]
            distance_cache.save_row(cache, keys[i], computed[j], exact)
    return torch.stack(rows)
