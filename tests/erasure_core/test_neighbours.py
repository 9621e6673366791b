"""Guarded neighbours: the erased concept's nearest words by the text encoder are kept, except those the model
draws as the concept itself."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from erasure_core import erase, export_lora, load_lora, make_config
from erasure_core.candidates import banned_words
from erasure_core.frontend.lora_info import describe
from erasure_core.neighbours import guarded_neighbours, nearest_words
from erasure_core.testing import WORDS
from tests.conftest import make_backend

_ROOT = Path(tempfile.mkdtemp(prefix="erasure-neighbours-"))
FAST = {"lr": 1e-2, "ddim_steps": 8, "steps": 30, "until_erased": False, "audit_samples": 2}


@pytest.fixture(scope="module")
def backend():
    return make_backend("sd1", _ROOT / "sd1")


def test_nearest_words_are_ranked_by_mean_token_state_cosine_without_banned_words(backend) -> None:
    conds = backend.encode_prompts(["cat", *WORDS])
    means = torch.stack([conds.context[i, : int(conds.lengths[i])].mean(0) for i in range(len(conds))])
    cosine = F.normalize(means, dim=-1)[1:] @ F.normalize(means, dim=-1)[0]
    expected = [w for _, w in sorted(zip(cosine.tolist(), WORDS, strict=True), reverse=True) if w != "cat"][:5]
    (found,) = nearest_words(backend, conds.select(0), WORDS, 5, banned_words(["cat"]))
    assert found == expected


def test_a_word_the_model_draws_as_the_erased_concept_is_not_guarded(backend, monkeypatch) -> None:
    vocabulary = ["cat.", *WORDS]  # "cat." is drawn as "cat" (its prediction points the same way)
    monkeypatch.setattr(backend, "vocabulary", lambda: vocabulary)
    (nearest,) = nearest_words(backend, backend.encode_prompts(["cat"]), vocabulary, 3, banned_words(["cat"]))
    assert nearest[0] == "cat."  # the encoder alone would keep it
    guarded = guarded_neighbours(backend, make_config("esd", erase=["cat"], guard_neighbours=3), (4, 8, 8))
    assert len(guarded["cat"]) == 3 and "cat." not in guarded["cat"]
    assert not {w.lower() for w in guarded["cat"]} & banned_words(["cat"])


def test_guarded_neighbours_drift_less_and_the_lora_says_which_they_are(backend, tmp_path: Path) -> None:
    plain = erase(backend, make_config("esd", erase=["cat"], **FAST))
    guarded = erase(backend, make_config("esd", erase=["cat"], guard_neighbours=2, **FAST))
    words = guarded.guarded["cat"]
    assert len(words) == 2
    rows = {r["prompt"]: r for r in guarded.audit.rows}
    assert {rows[w]["role"] for w in words} == {"guarded"}
    from erasure_core.trainer import run_audit

    before = {r["prompt"]: r["drift"] for r in run_audit(backend, plain.weights, plain.config, tuple(words)).rows}
    assert sum(rows[w]["drift"] for w in words) < 0.5 * sum(before[w] for w in words)
    assert rows["cat"]["erasure"] > 0.25  # still erased
    info = load_lora(export_lora(guarded, tmp_path / "g.safetensors")).info()
    assert info["guarded"] == {"cat": words}
    assert f"kept as neighbours of 'cat': {', '.join(words)}" in describe(
        load_lora(tmp_path / "g.safetensors").metadata
    )


def test_the_vocabulary_is_encoded_once_per_concept_and_then_read_from_the_cache(backend, tmp_path: Path) -> None:
    calls = []
    encode = backend.encode_prompts

    def counting(prompts):
        calls.append(len(prompts))
        return encode(prompts)

    concepts = backend.encode_prompts(["cat", "car"])
    first = nearest_words(backend, concepts, WORDS, 4, set(), tmp_path)
    backend.encode_prompts = counting
    try:
        again = nearest_words(backend, concepts, WORDS, 4, set(), tmp_path)
        assert again == first and calls == []  # nothing encoded: both rows came from the cache
        nearest_words(backend, backend.encode_prompts(["tree"]), WORDS, 4, set(), tmp_path)
        assert sum(calls) == 1 + len(WORDS)  # "tree" itself, then the vocabulary for the new concept only
    finally:
        del backend.encode_prompts


def test_a_word_drawn_as_another_erased_concept_is_not_guarded_either(backend, monkeypatch) -> None:
    import erasure_core.neighbours as neighbours

    vocabulary = ["dog.", *WORDS]  # drawn as "dog"
    monkeypatch.setattr(backend, "vocabulary", lambda: vocabulary)
    monkeypatch.setattr(neighbours, "EXAMINED", len(vocabulary))  # examine every word, keep every one allowed
    every = {"guard_neighbours": len(vocabulary)}
    alone = guarded_neighbours(backend, make_config("esd", erase=["cat"], **every), (4, 8, 8))
    assert "dog." in alone["cat"]  # not cat's synonym
    both = guarded_neighbours(backend, make_config("esd", erase=["cat", "dog"], **every), (4, 8, 8))
    assert "dog." not in both["cat"] + both["dog"]
