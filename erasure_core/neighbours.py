"""Guarded neighbours: the concepts next to an erased one, kept without the user naming them (`guard_neighbours`).

An edit of the cross-attention layers reaches every prompt whose encoding is near the erased concept's, so the
concepts the text encoder puts next to it lose most: on the icons world, erasing "cat" cost "dog" (its nearest
concept by the encoder) 37 points with ESD while the far concepts lost none. The guard takes each erased concept's
nearest vocabulary words by the text encoder (cosine of the mean of each prompt's token states), leaves out those
the original model draws as the concept itself, and keeps the nearest `guard_neighbours` of the others with the
ESD-preserve term, as if the user had named them.

Which words are the concept itself is the model's call, not the encoder's: on latents the original model sampled
for the concept, a word whose conditional direction eps(word) - eps("") points the same way as the concept's
(cosine >= SYNONYM_COSINE) is drawn as the concept. On the objects world (where the threshold was set): "fungus"
0.54 and "fungi" 0.54 for "mushroom", "greyhound" 0.60 for "bus", against "truck" 0.27 and "car" 0.13 for "bus" and
"cactus" -0.11 for "mushroom". Keeping such a word would keep the concept; it is left to the erasure.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from . import distance_cache
from .audit import Probe, ProbeSet
from .backends.base import Backend, Conditioning, concept_groups, host_cache_folder
from .cancel import checkpoint, phase
from .candidates import banned_words
from .config import EraseConfig
from .defaults import VOCABULARY_LIMIT

logger = logging.getLogger(__name__)

SYNONYM_COSINE = 0.5  # ours: see the module docstring
EXAMINED = 32  # ours: nearest words examined per concept (each costs one UNet forward on a few latents)
_CHUNK = 256  # words encoded per pass
_PROBE_SAMPLES = 2
_CACHE_KIND = "pooled-cosine"
SHOWN = 3  # neighbours the audit probes and the before/after grid shows per erased concept


def pooled_directions(cond: Conditioning) -> torch.Tensor:
    """`[B, D]` unit vectors: the mean of each prompt's token states over its real tokens (all, if unknown)."""
    context = cond.context.float()
    if cond.lengths is None:
        mean = context.mean(1)
    else:
        positions = torch.arange(context.shape[1], device=context.device)
        mask = (positions[None] < cond.lengths.to(context.device)[:, None]).to(context.dtype)[..., None]
        mean = (context * mask).sum(1) / mask.sum(1).clamp_min(1)
    return F.normalize(mean, dim=-1)


def nearest_words(
    backend: Backend,
    concepts: Conditioning,
    vocabulary: Sequence[str],
    n: int,
    banned: set[str],
    cache: Path | None = None,
) -> list[list[str]]:
    """Per concept, the `n` vocabulary words nearest by the text encoder, nearest first (banned words left out).
    Each concept's similarities to the vocabulary are kept in `cache` (a `distance_cache` folder; None = none), as
    the candidate search's distances are: encoding the vocabulary is the guard's whole set-up cost."""
    targets = pooled_directions(concepts)
    keys = [distance_cache.row_key(t, vocabulary, _CACHE_KIND) for t in targets] if cache else []
    rows = [distance_cache.load_row(cache, key, len(vocabulary)) for key in keys] if cache else [None] * len(targets)
    if missing := [i for i, row in enumerate(rows) if row is None]:
        logger.info("Encoding %d vocabulary words to find the nearest words to the concepts", len(vocabulary))
        chunks = []
        for start in range(0, len(vocabulary), _CHUNK):
            checkpoint("search")
            words = pooled_directions(backend.encode_prompts(vocabulary[start : start + _CHUNK]))
            chunks.append((targets[missing] @ words.to(targets.device).T).cpu())
        computed = torch.cat(chunks, dim=1)
        for j, i in enumerate(missing):
            rows[i] = computed[j]
            if cache:
                distance_cache.save_row(cache, keys[i], computed[j])
    similarity = torch.stack(rows).clone()
    allowed = torch.tensor([w.lower() not in banned for w in vocabulary])
    similarity[:, ~allowed] = -2.0
    top = similarity.topk(min(n, int(allowed.sum())), dim=1).indices
    return [[vocabulary[int(i)] for i in row] for row in top]


@torch.no_grad()
def guarded_neighbours(
    backend: Backend, config: EraseConfig, latent_shape: tuple[int, int, int]
) -> dict[str, list[str]]:
    """Each erased concept's guarded neighbours (see the module docstring); {} when the guard is off."""
    count = config.guard_neighbours or 0
    if count == 0:
        return {}
    vocabulary = backend.vocabulary()[:VOCABULARY_LIMIT]
    banned = banned_words(config.erase) | {form for k in config.keep for form in banned_words([k])}
    concepts = backend.encode_prompts(config.erase)
    nearest = nearest_words(
        backend, concepts, vocabulary, EXAMINED, banned, distance_cache.cache_dir(host_cache_folder(backend))
    )
    probes = [Probe(concept, "erased", (("", 1.0),), 1.0) for concept in config.erase]
    with phase("search"):  # the probes' sampling belongs to the guard's set-up
        latents = ProbeSet(
            backend,
            probes,
            _PROBE_SAMPLES,
            config.audit_ddim_steps,
            config.sample_guidance,
            config.seed + 2,
            latent_shape,
        )
    unconditional = backend.encode_prompts([""])
    guarded: dict[str, list[str]] = {}
    taken: set[str] = set()
    for concept, words, entry in zip(config.erase, nearest, latents.entries, strict=True):
        base = _prediction(backend, entry, unconditional)
        # Every erased concept's direction on these latents: a word drawn as another erased concept ("puppy" while
        # "dog" is erased too) must not be kept either.
        erased = torch.stack([_direction(backend, entry, concepts.select(i), base) for i in range(len(concepts))])
        conds = backend.encode_prompts(words)
        picked = []
        for i, word in enumerate(words):
            if len(picked) == count:
                break
            synonym = float((erased @ _direction(backend, entry, conds.select(i), base)).max()) >= SYNONYM_COSINE
            if not synonym and word.lower() not in taken:
                picked.append(word)
                taken.add(word.lower())
        guarded[concept] = picked
    return guarded


def _prediction(backend: Backend, entry: dict, cond: Conditioning) -> torch.Tensor:
    """The original model's prediction for one prompt on a probe's latents, flattened."""
    checkpoint("search")
    return backend.predict_noise(entry["x"], entry["t"], cond.repeat(entry["x"].shape[0])).float().flatten()


def _direction(backend: Backend, entry: dict, cond: Conditioning, base: torch.Tensor) -> torch.Tensor:
    """The unit conditional direction eps(prompt) - eps("") on a probe's latents."""
    return F.normalize(_prediction(backend, entry, cond) - base, dim=0)


def shown_neighbours(backend: Backend, config: EraseConfig, searched: dict[str, list[str]]) -> dict[str, list[str]]:
    """Per erased concept, the neighbours a user is shown (the audit's probes, the before/after grid's rows).

    Where the model declares the concepts it draws (`concept_groups`: the demo model's card), they are the other
    concepts of the erased one's group, which the model knows and which sit next to it. Otherwise they are the
    concept search's finds that the text encoder tells from noise (`searched`, `ConceptSearch.neighbours`): a word
    no nearer to the concept than a random word says nothing about what the erasure spared. Never an erased or kept
    concept, nor an inflection of an erased one.
    """
    groups = [list(members) for members in concept_groups(backend).values()]
    taken = banned_words(config.erase) | {k.lower() for k in config.keep}
    shown = {}
    for concept in config.erase:
        group = next((m for m in groups if concept.lower() in {w.lower() for w in m}), None)
        words = group if group is not None else searched.get(concept, [])
        shown[concept] = [w for w in words if w.lower() not in taken][:SHOWN]
    return shown
