"""Shared fixtures: tiny random SD1-like and SDXL-like models (built in code, CPU, no downloads)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from erasure_core.backends.diffusers_backend import DiffusersBackend
from erasure_core.testing import WORDS, tiny_sd1, tiny_sdxl

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the suite never downloads; fail loudly if something tries
os.environ["ERASURE_CACHE_DIR"] = "off"  # no test reads or writes the user's cache; cache tests set their own folder

BUILDERS = {"sd1": tiny_sd1, "sdxl": tiny_sdxl}


def make_backend(arch: str, folder: Path) -> DiffusersBackend:
    return DiffusersBackend.from_pipeline(BUILDERS[arch](folder), name=f"tiny-{arch}")


def trained_alike(a, b) -> bool:
    """Two runs' results: the same UNet evaluations and bit-identical LoRA weights."""
    return a.unet_evals == b.unet_evals and all(torch.equal(a.weights[k].up, b.weights[k].up) for k in a.weights)


def most_distinct_word(backend: DiffusersBackend, concept: str) -> str:
    """The test vocabulary word whose encoding is farthest from `concept`'s.

    Random tiny encoders map some words almost onto each other; no method can erase one of two concepts the
    model cannot tell apart, so keep-list assertions use a word this model does distinguish.
    """
    words = [w for w in WORDS if w != concept]
    conds = backend.encode_prompts([concept, *words]).flat()
    return words[int(torch.cdist(conds[:1], conds[1:]).argmax())]


@pytest.fixture(params=["sd1", "sdxl"])
def arch(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def backend(arch: str, tmp_path: Path) -> DiffusersBackend:
    return make_backend(arch, tmp_path / "model")


@pytest.fixture
def sd1_backend(tmp_path: Path) -> DiffusersBackend:
    return make_backend("sd1", tmp_path / "model")
