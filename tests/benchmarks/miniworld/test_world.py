"""The miniature world: deterministic renders, its concepts and captions, and the shipped model."""

from __future__ import annotations

import hashlib
import re

import numpy as np
import torch

from benchmarks.miniworld.card import WEIGHT_FILES
from benchmarks.miniworld.data import CaptionSet, RenderedSet
from benchmarks.miniworld.evaluate import load_classifier
from benchmarks.miniworld.nets import STYLE_LABELS, to_tensor
from benchmarks.miniworld.render import render, render_batch
from benchmarks.miniworld.world import (
    GROUPS,
    IMPLICIT,
    OBJECTS,
    STYLES,
    Scene,
    implicit_prompts,
    list_concepts,
    style_prompt,
)
from erasure_core.demo import DEMO_DIR, load_demo


def test_renderer_is_deterministic_and_varies_with_the_seed() -> None:
    scenes = [Scene(o, s, n) for o in OBJECTS for s, n in (("plain", False), ("striped", True))]
    first, again = render_batch(scenes, list(range(len(scenes)))), render_batch(scenes, list(range(len(scenes))))
    assert first.shape == (len(scenes), 32, 32, 3) and first.dtype == np.uint8
    assert np.array_equal(first, again)
    other = render_batch(scenes, [s + 1000 for s in range(len(scenes))])
    assert all(not np.array_equal(a, b) for a, b in zip(first, other, strict=True))


def test_night_scenes_are_dark() -> None:
    day = np.mean([np.asarray(render(Scene("house"), s)).mean() for s in range(20)])
    night = np.mean([np.asarray(render(Scene("house", night=True), s)).mean() for s in range(20)])
    assert night < 0.5 * day


def test_world_has_five_groups_of_five_four_styles_and_an_implicit_concept() -> None:
    concepts = list_concepts()
    assert len(concepts["groups"]) >= 5 and all(len(m) >= 5 for m in concepts["groups"].values())
    assert len(concepts["styles"]) >= 4 and concepts["implicit"] == IMPLICIT
    assert sorted(OBJECTS) == sorted(o for m in GROUPS.values() for o in m)


def test_captions_vary_in_wording() -> None:
    captions = CaptionSet.build(0)
    apple = [captions.captions[i] for i in captions.by_kind[Scene("apple")]]
    assert len(set(apple)) >= 5 and all("apple" in c for c in apple)
    car_night = [captions.captions[i] for i in captions.by_kind[Scene("car", night=True)]]
    assert any(re.search("automobile", c) for c in captions.captions) and len(set(car_night)) >= 5


def test_most_implicit_prompts_never_say_the_word() -> None:
    prompts = implicit_prompts()
    assert len(prompts) >= 50 and sum(IMPLICIT in p for p in prompts) < len(prompts) / 2


def test_shipped_weights_match_the_model_card() -> None:
    card = (DEMO_DIR / "MODEL_CARD.md").read_text()
    for name in WEIGHT_FILES:
        digest = hashlib.sha256((DEMO_DIR / name).read_bytes()).hexdigest()
        assert f"`{name}`: sha256 `{digest}`" in card
    assert sum((DEMO_DIR / name).stat().st_size for name in WEIGHT_FILES) < 30 * 2**20


def test_demo_model_loads_as_a_diffusers_backend() -> None:
    demo = load_demo()
    assert demo.backend.arch == "sd1" and demo.backend.latent_shape() == (4, 8, 8)
    cond = demo.backend.encode_prompts(["a photo of an apple", ""])
    assert cond.context.shape == (2, 16, 384)
    with torch.no_grad():
        eps = demo.backend.predict_noise(torch.randn(2, 4, 8, 8), torch.tensor([10, 900]), cond)
    assert eps.shape == (2, 4, 8, 8) and torch.isfinite(eps).all()


def test_classifier_recognises_fresh_renders() -> None:
    fresh = RenderedSet.make(500, seed=424242)  # a seed no training set used
    classifier = load_classifier()
    objects, styles, night = fresh.labels()
    with torch.no_grad():
        o, s, n = classifier(to_tensor(fresh.images))
    assert (o.argmax(1) == objects).float().mean() >= 0.98
    assert (s.argmax(1) == styles).float().mean() >= 0.95
    assert ((n > 0).float() == night).float().mean() >= 0.98
    assert STYLE_LABELS[1:] == STYLES


def test_shipped_model_draws_every_style() -> None:
    # Each style must survive the autoencoder and be learnable, or the styles task cannot measure preservation.
    from erasure_core.preview import generate_images

    demo, classifier = load_demo(), load_classifier()
    objects = OBJECTS[::5]
    prompts = [style_prompt(o, s) for s in STYLES for o in objects for _ in range(2)]
    images = generate_images(demo.backend, demo.vae, prompts, list(range(len(prompts))), steps=15)
    with torch.no_grad():
        styles = classifier(to_tensor(images))[1].argmax(1).view(len(STYLES), -1)
    for i, style in enumerate(STYLES):
        assert (styles[i] == STYLE_LABELS.index(style)).float().mean() >= 0.5, style
