"""The neighbours a user is shown (audit rows, before/after grid): concepts the model knows next to the erased one
where it declares them, else only the search's finds that the text encoder tells from noise."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import torch

from erasure_core import candidates, erase, export_lora, load_lora, make_config, run_audit
from erasure_core.adversarial import ConceptSearch
from erasure_core.backends.base import Conditioning
from erasure_core.demo import DEMO_DIR, load_demo
from erasure_core.frontend.lora_info import describe, preview_rows_of
from erasure_core.preview import preview_rows, row_label
from tests.conftest import make_backend

_ROOT = Path(tempfile.mkdtemp(prefix="erasure-shown-"))
GROUPS = {"animals": ["cat", "dog", "horse", "bird", "fish"], "fruits": ["apple", "banana", "orange"]}
EAP_FAST = {"lr": 1e-2, "ddim_steps": 8, "steps": 4, "until_erased": False, "audit_samples": 1, "vocabulary_limit": 60}


@pytest.fixture(scope="module")
def backend():
    return make_backend("sd1", _ROOT / "sd1")


def _neighbour_rows(result) -> list[str]:
    return [row["prompt"] for row in result.audit.rows if row["role"] == "neighbour"]


def test_a_model_that_declares_its_concepts_shows_the_erased_concept_s_group(backend, monkeypatch) -> None:
    monkeypatch.setattr(backend, "concept_groups", GROUPS, raising=False)
    result = erase(backend, make_config("uce", erase=["cat"], keep=["dog"]))
    assert result.neighbours == {"cat": ["horse", "bird", "fish"]}  # its group, less the kept concept, at most 3
    assert _neighbour_rows(result) == ["horse", "bird", "fish"]

    path = export_lora(result, _ROOT / "group.safetensors")
    lora = load_lora(path)
    assert "neighbours of 'cat' (audited): horse, bird, fish" in describe(lora.metadata)
    assert preview_rows_of(lora.metadata) == [
        ("erased", "cat"),
        ("kept", "dog"),
        ("neighbour", "horse"),
        ("neighbour", "bird"),
        ("neighbour", "fish"),
    ]
    monkeypatch.delattr(backend, "concept_groups")  # the file's own record serves a host that knows no groups
    audit = run_audit(backend, lora, make_config("uce", erase=["cat"], keep=["dog"], audit_samples=1))
    assert [r["prompt"] for r in audit.rows if r["role"] == "neighbour"] == ["horse", "bird", "fish"]


def test_a_concept_outside_every_group_falls_back_to_the_search(backend, monkeypatch) -> None:
    monkeypatch.setattr(backend, "concept_groups", GROUPS, raising=False)
    result = erase(backend, make_config("uce", erase=["car"]))
    assert result.neighbours == {"car": []} and _neighbour_rows(result) == []


def test_only_finds_the_text_encoder_tells_from_noise_are_shown(backend, monkeypatch) -> None:
    config = make_config("eap", erase=["cat"], **EAP_FAST)
    monkeypatch.setattr(candidates, "NOISE_Z", float("-inf"))  # every candidate counts as a real neighbour
    every = erase(backend, config)
    assert every.neighbours["cat"] == every.found["cat"][:3] and _neighbour_rows(every) == every.found["cat"][:3]
    monkeypatch.setattr(candidates, "NOISE_Z", float("inf"))  # none does
    none = erase(backend, config)
    assert none.found["cat"] and none.neighbours == {"cat": []} and _neighbour_rows(none) == []


def test_search_neighbours_are_the_highest_ranked_distinct_candidates() -> None:
    search = ConceptSearch("cat", ["a", "b", "c", "d"], Conditioning(torch.eye(4)[:, None, :]), ["b", "d"])
    with torch.no_grad():
        search.logits.copy_(torch.tensor([4.0, 1.0, 3.0, 2.0]))
    assert search.ranked(4) == ["a", "c", "d", "b"]
    assert search.neighbours() == ["d", "b"]


def test_a_file_without_a_neighbour_record_shows_none_of_its_finds(backend, tmp_path: Path) -> None:
    result = erase(backend, make_config("eap", erase=["cat"], **EAP_FAST))
    path = export_lora(result, tmp_path / "old.safetensors")
    lora = load_lora(path)
    lora.metadata.pop("erasure_neighbours")  # as files made before the record existed
    audit = run_audit(backend, lora, make_config("eap", erase=["cat"], **EAP_FAST))
    assert result.found["cat"] and [r for r in audit.rows if r["role"] == "neighbour"] == []


def test_grid_rows_say_what_each_row_is() -> None:
    rows = preview_rows(["apple"], ["car"], {"apple": ["banana", "car", "pear"]}, limit=3)
    assert rows == [("erased", "apple"), ("kept", "car"), ("neighbour", "banana")]
    assert [row_label(*r) for r in rows] == ["erased: apple", "kept: car", "neighbour: banana"]
    assert row_label("", "a typed prompt") == "a typed prompt"


def test_the_demo_model_shows_the_fruits_next_to_apple() -> None:
    backend = load_demo().backend
    assert "apple" in backend.concept_groups["fruits"] and len(backend.concept_groups) == 5
    result = erase(backend, make_config("uce", erase=["apple"], audit_samples=1))
    assert _neighbour_rows(result) == ["banana", "orange", "pear"]
    card = (DEMO_DIR / "MODEL_CARD.md").read_text()
    assert all(f"| {group} | {', '.join(members)} |" in card for group, members in backend.concept_groups.items())
