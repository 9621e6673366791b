from __future__ import annotations

import pytest
import torch

from erasure_core import ConfigError
from erasure_core.adversarial import ConceptSearch, gumbel_sample
from erasure_core.backends.base import Conditioning
from erasure_core.backends.diffusers_backend import tokenizer_words
from erasure_core.candidates import (
    banned_words,
    distinct_words,
    find_candidates,
    inflections,
    kmeans_1d,
    pick_candidates,
    vocabulary_distances,
)
from erasure_core.defaults import AGE_TARGET_DRAWS
from erasure_core.testing import write_clip_tokenizer


def test_kmeans_finds_separated_clusters() -> None:
    values = torch.tensor([1.0, 1.1, 0.9, 5.0, 5.2, 9.0, 9.1])
    centres = sorted(kmeans_1d(values, 3).tolist())
    assert centres == pytest.approx([1.0, 5.1, 9.05], abs=1e-6)


def test_candidates_are_the_nearest_words_spread_over_the_distances() -> None:
    words = [f"w{i}" for i in range(100)]
    distances = torch.arange(100, dtype=torch.float32)
    picked = pick_candidates(distances, words, k_closest=50, num_centers=5)
    assert len(picked) == 5 and int(picked[0][1:]) < 10
    assert all(int(w[1:]) < 50 for w in picked) and int(picked[-1][1:]) > 40
    assert picked == sorted(picked, key=lambda w: int(w[1:]))


def test_no_clustering_when_few_words() -> None:
    distances = torch.tensor([3.0, 1.0, 2.0])
    assert pick_candidates(distances, ["a", "b", "c"], k_closest=10, num_centers=5) == ["b", "c", "a"]


def test_erased_words_are_excluded() -> None:
    distances = torch.tensor([0.0, 1.0, 2.0])
    assert pick_candidates(distances, ["cat", "dog", "car"], 10, 10, exclude=["Cat"]) == ["dog", "car"]


def test_no_search_picks_another_erased_concept_or_an_inflection_of_one() -> None:
    table = {"cat": [0.0], "car": [10.0], "cats": [0.5], "car's": [9.5], "cars": [10.2], "dog": [1.0], "bus": [9.0]}

    def encode(words):
        return Conditioning(torch.tensor([table[w] for w in words])[:, None, :])

    vocabulary = ["cats", "car's", "cars", "dog", "bus"]
    found = find_candidates(encode, ["cat", "car"], encode(["cat", "car"]), vocabulary, 2, 2, True)
    assert {c: f.words for c, f in found.items()} == {"cat": ["dog", "bus"], "car": ["bus", "dog"]}
    assert banned_words(["cherry", "old bus"]) >= {"cherry", "cherries", "old", "bus", "buses", "bus's"}
    assert inflections("cherries") >= {"cherry", "cherries"} and "dog" not in banned_words(["cat"])


def test_find_candidates_encodes_the_vocabulary_once_for_all_concepts() -> None:
    table = {"cat": [0.0], "car": [10.0], "dog": [1.0], "bus": [9.0], "van": [11.0]}
    calls = []

    def encode(words):
        calls.append(list(words))
        return Conditioning(torch.tensor([table[w] for w in words])[:, None, :])

    found = find_candidates(encode, ["cat", "car"], encode(["cat", "car"]), ["dog", "bus", "van"], 2, 2, True)
    assert {c: f.words for c, f in found.items()} == {"cat": ["dog", "bus"], "car": ["bus", "van"]}
    assert len(calls) == 2


def test_empty_vocabulary_raises() -> None:
    with pytest.raises(ConfigError, match="vocabulary is empty"):
        find_candidates(lambda w: None, ["cat"], None, [], 2, 2, True)


def test_tokenizer_words_are_whole_alphabetic_words_most_frequent_first(tmp_path) -> None:
    tokenizer = write_clip_tokenizer(tmp_path)
    words = tokenizer_words(tokenizer)
    assert words[:3] == ["cat", "dog", "horse"] and all(w.isalpha() and len(w) > 1 for w in words)


def test_hard_gumbel_is_one_hot_with_straight_through_gradient() -> None:
    logits = torch.zeros(5, requires_grad=True)
    weights = gumbel_sample(logits, 2.0, True, 2, torch.Generator().manual_seed(0))
    assert sorted(weights.detach().tolist()) == [0, 0, 0, 0, 1]
    (weights * torch.arange(5.0)).sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_soft_top_k_mixes_k_candidates() -> None:
    weights = gumbel_sample(torch.zeros(6), 2.0, False, 3, torch.Generator().manual_seed(0))
    assert int((weights > 0).sum()) == 3 and float(weights.sum()) == pytest.approx(1.0)


def test_search_sharpens_towards_the_rewarded_candidate() -> None:
    search = ConceptSearch("cat", ["a", "b", "c"], Conditioning(torch.eye(3)[:, None, :]))
    optimizer = torch.optim.Adam([search.logits], lr=0.1)
    generator = torch.Generator().manual_seed(0)
    for _ in range(100):
        weights = search.sample(2.0, True, 1, generator)
        loss = -search.embed(weights).context[0, 0, 2]  # reward picking "c"
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert search.ranked(1) == ["c"] and search.target_mixture(16, generator)[0][0] == "c"


def _linear_encoder(n_words: int) -> tuple[list[str], list[int], object]:
    """A text encoder whose matmul runs in bfloat16 under autocast, as a real one's does."""
    generator = torch.Generator().manual_seed(0)
    table = torch.randn(n_words, 4, 32, generator=generator)
    layer = torch.nn.Linear(32, 32)
    torch.nn.init.normal_(layer.weight, generator=generator)
    calls: list[int] = []

    def encode(words):
        calls.append(len(words))
        with torch.no_grad():
            return Conditioning(layer(table[torch.tensor([int(w[1:]) for w in words])]))

    return [f"w{i}" for i in range(n_words)], calls, encode


def test_bfloat16_ranking_keeps_the_nearest_distances_exact_and_encodes_only_those_again() -> None:
    words, calls, encode = _linear_encoder(1500)
    concepts = encode(["w3", "w700"])
    exact, exact_count = vocabulary_distances(encode, concepts, words)
    calls.clear()
    fast, fast_count = vocabulary_distances(encode, concepts, words, exact_nearest=40, low_precision=True)
    assert exact_count is None and fast_count == 40
    assert not torch.equal(fast, exact)  # the far words keep their bfloat16 distances
    again = sum(calls) - 256 - len(words)  # beyond the exact first chunk and the bfloat16 pass
    assert 0 < again < len(words) // 4
    for row in range(2):
        nearest = exact[row].argsort()[:40]
        torch.testing.assert_close(fast[row, nearest], exact[row, nearest], rtol=0, atol=0)
        assert fast[row].argsort()[:40].tolist() == nearest.tolist()
        kept = pick_candidates(exact[row], words, 39, 8, exclude=[words[int(nearest[0])]])
        assert pick_candidates(fast[row], words, 39, 8, exclude=[words[int(nearest[0])]]) == kept


def test_small_vocabularies_and_unrequested_ranking_stay_exact() -> None:
    words, calls, encode = _linear_encoder(300)
    concepts = encode(["w1"])
    exact, _ = vocabulary_distances(encode, concepts, words)
    # A vocabulary of one chunk, or the ranking turned off: one full-precision pass.
    for distances, count in (
        vocabulary_distances(encode, concepts, words[:200], exact_nearest=10, low_precision=True),
        vocabulary_distances(encode, concepts, words, exact_nearest=10, low_precision=False),
    ):
        assert count is None
        torch.testing.assert_close(distances, exact[:, : distances.shape[1]], rtol=0, atol=0)


def test_age_target_estimates_what_a_step_steers_to_where_the_top_five_does_not() -> None:
    """A step steers to candidate i with probability softmax(logits)_i. While the distribution is spread (after a
    short run), the top five renormalised overstate the leaders; the drawn mixture does not."""
    n = 100
    search = ConceptSearch("cat", [f"w{i}" for i in range(n)], Conditioning(torch.zeros(n, 1, 1)))
    with torch.no_grad():
        search.logits.copy_(torch.linspace(0.0, 1.0, n))
    # A stand-in for each candidate's prediction, larger for the likelier candidates.
    value = dict(zip(search.words, torch.linspace(0.0, 3.0, n).tolist(), strict=True))
    expected = float((torch.softmax(search.logits.detach(), 0) * torch.linspace(0.0, 3.0, n)).sum())

    def estimate(mixture: list[tuple[str, float]]) -> float:
        return sum(w * value[word] for word, w in mixture)

    probs = torch.softmax(search.logits.detach(), 0)
    top = probs.topk(5)  # the old measure: the five likeliest, renormalised
    top_five = [
        (search.words[int(i)], float(p / top.values.sum())) for p, i in zip(top.values, top.indices, strict=True)
    ]
    top_five_error = abs(estimate(top_five) - expected)
    drawn = [search.target_mixture(AGE_TARGET_DRAWS, torch.Generator().manual_seed(s)) for s in range(20)]
    drawn_error = sum(abs(estimate(m) - expected) for m in drawn) / len(drawn)
    assert drawn_error < 0.5 * top_five_error
    assert all(abs(sum(w for _, w in m) - 1.0) < 1e-9 and len(m) <= AGE_TARGET_DRAWS for m in drawn)
    assert search.target_mixture(AGE_TARGET_DRAWS, torch.Generator().manual_seed(3)) == drawn[3]  # reproducible


def test_only_candidates_nearer_than_the_vocabulary_s_noise_are_distinct() -> None:
    # 200 words at distances around 10 (the noise), one clearly near word and one barely below the mean
    torch.manual_seed(0)
    noise = 10 + 0.5 * torch.randn(200)
    distances = torch.cat([torch.tensor([3.0, 9.6]), noise])
    words = ["near", "barely", *[f"w{i}" for i in range(200)]]
    assert distinct_words(distances, words, ["near", "barely", "w0"]) == ["near"]
    picked = pick_candidates(distances, words, k_closest=10, num_centers=4)
    assert "near" in picked and distinct_words(distances, words, picked) == ["near"]
