"""The on-disk cache of vocabulary distances: a re-run skips the vocabulary encoding and finds the same candidates."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from erasure_core import distance_cache, erase, make_config
from erasure_core.backends.base import Conditioning, host_cache_folder
from erasure_core.candidates import find_candidates
from tests.conftest import make_backend

TABLE = {"cat": [0.0], "car": [10.0], "dog": [1.0], "bus": [9.0], "van": [11.0], "cow": [2.0]}
VOCABULARY = ["dog", "bus", "van", "cow"]


def _counting_encoder() -> tuple[list[list[str]], object]:
    calls: list[list[str]] = []

    def encode(words):
        calls.append(list(words))
        return Conditioning(torch.tensor([TABLE[w] for w in words])[:, None, :])

    return calls, encode


def _find(encode, concepts, cache, vocabulary=VOCABULARY):
    found = find_candidates(encode, concepts, encode(concepts), vocabulary, 2, 2, True, cache)
    return {concept: candidates.words for concept, candidates in found.items()}


def test_second_search_reads_the_distances_instead_of_encoding_the_vocabulary(tmp_path: Path) -> None:
    calls, encode = _counting_encoder()
    first = _find(encode, ["cat", "car"], tmp_path)
    assert len(list(tmp_path.glob("*.safetensors"))) == 2 and not list(tmp_path.glob("*.partial"))
    calls.clear()
    assert _find(encode, ["cat", "car"], tmp_path) == first == {"cat": ["dog", "cow"], "car": ["bus", "van"]}
    assert calls == [["cat", "car"]]  # only the concepts' own encodings, never a vocabulary word


def test_only_concepts_without_a_cached_row_encode_the_vocabulary(tmp_path: Path) -> None:
    calls, encode = _counting_encoder()
    _find(encode, ["cat"], tmp_path)
    calls.clear()
    found = _find(encode, ["cat", "car"], tmp_path)
    assert found["car"] == ["bus", "van"] and found["cat"] == ["dog", "cow"]
    assert calls[1:] == [VOCABULARY]  # one encoding pass, for "car" only


def test_another_vocabulary_or_encoder_misses_the_cache(tmp_path: Path) -> None:
    calls, encode = _counting_encoder()
    _find(encode, ["cat"], tmp_path)
    calls.clear()
    assert _find(encode, ["cat"], tmp_path, VOCABULARY[:3]) == {"cat": ["dog", "bus"]}
    assert VOCABULARY[:3] in calls
    TABLE["cat"] = [0.5]  # a different text encoder gives the concept another encoding
    try:
        calls.clear()
        _find(encode, ["cat"], tmp_path)
        assert VOCABULARY in calls
    finally:
        TABLE["cat"] = [0.0]


def test_damaged_cache_file_is_recomputed_and_replaced(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    calls, encode = _counting_encoder()
    first = _find(encode, ["cat"], tmp_path)
    (path,) = tmp_path.glob("*.safetensors")
    path.write_bytes(b"not a safetensors file")
    calls.clear()
    with caplog.at_level(logging.WARNING):
        assert _find(encode, ["cat"], tmp_path) == first
    assert "unreadable cache file" in caplog.text and VOCABULARY in calls
    assert distance_cache.load_row(tmp_path, path.stem, len(VOCABULARY)) is not None  # rewritten


def test_unwritable_cache_folder_only_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where the folder should be")
    _, encode = _counting_encoder()
    with caplog.at_level(logging.WARNING):
        assert _find(encode, ["cat"], blocker / "cache") == {"cat": ["dog", "cow"]}
    assert "Could not cache" in caplog.text


def test_cache_folder_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(distance_cache.CACHE_ENV, str(tmp_path))
    assert distance_cache.cache_dir() == tmp_path
    monkeypatch.setenv(distance_cache.CACHE_ENV, "off")
    assert distance_cache.cache_dir() is None
    monkeypatch.delenv(distance_cache.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert distance_cache.cache_dir() == tmp_path / "concept-erasure" / "vocabulary-distances"
    host = SimpleNamespace(cache_folder=tmp_path / "host")  # a host's own folder, unless the variable says otherwise
    assert distance_cache.cache_dir(host_cache_folder(host)) == tmp_path / "host"
    assert distance_cache.cache_dir(host_cache_folder(SimpleNamespace())) == tmp_path / "concept-erasure" / (
        "vocabulary-distances"
    )
    monkeypatch.setenv(distance_cache.CACHE_ENV, "off")
    assert distance_cache.cache_dir(host_cache_folder(host)) is None


def test_eap_rerun_from_the_cache_gives_the_same_lora(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(distance_cache.CACHE_ENV, str(tmp_path))
    backend = make_backend("sd1", Path(tempfile.mkdtemp()))
    config = make_config("eap", erase=["cat"], steps=3, ddim_steps=10, k_closest=20, num_centers=6, audit_samples=0)
    encoded: list[int] = []
    original = backend.encode_prompts
    monkeypatch.setattr(backend, "encode_prompts", lambda prompts: encoded.append(len(prompts)) or original(prompts))
    first = erase(backend, config)
    cold = sum(encoded)
    encoded.clear()
    second = erase(backend, config)
    assert sum(encoded) < cold - len(backend.vocabulary()) + 1  # the vocabulary was not encoded again
    assert first.found == second.found
    for name, weights in first.weights.items():
        torch.testing.assert_close(weights.down, second.weights[name].down, rtol=0, atol=0)
        torch.testing.assert_close(weights.up, second.weights[name].up, rtol=0, atol=0)


def test_a_row_exact_only_for_its_nearest_words_serves_no_search_that_reaches_further(tmp_path: Path) -> None:
    row = torch.tensor([3.0, 1.0, 2.0, 0.5])
    distance_cache.save_row(tmp_path, "partial", row, exact_nearest=2)
    distance_cache.save_row(tmp_path, "whole", row)
    assert torch.equal(distance_cache.load_row(tmp_path, "partial", 4, exact_nearest=2), row)
    assert distance_cache.load_row(tmp_path, "partial", 4, exact_nearest=3) is None
    assert distance_cache.load_row(tmp_path, "partial", 4) is None  # a caller that needs every distance
    assert torch.equal(distance_cache.load_row(tmp_path, "whole", 4, exact_nearest=3), row)
