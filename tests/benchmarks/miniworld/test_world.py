"""The miniature worlds: deterministic renders, their concepts and captions, and the shipped models."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

from benchmarks.miniworld.card import CONCEPTS_FILE, WEIGHT_FILES
from benchmarks.miniworld.data import CaptionSet, RenderedSet
from benchmarks.miniworld.evaluate import load_classifier
from benchmarks.miniworld.nets import to_tensor
from benchmarks.miniworld.world import ICONS_WORLD, OBJECTS_WORLD, WORLDS, Scene, World
from erasure_core.demo import DEMO_DIR, load_demo

ALL_WORLDS = pytest.mark.parametrize("world", WORLDS.values(), ids=list(WORLDS))


def _shipped(world: World) -> World:
    if not (world.model_dir / "unet" / "config.json").is_file():
        pytest.skip(f"the {world.name} world's model is not in this checkout ({world.model_dir})")
    return world


@ALL_WORLDS
def test_renderer_is_deterministic_and_varies_with_the_seed(world: World) -> None:
    scenes = [Scene(o, s, n) for o in world.objects for s, n in (("plain", False), (world.styles[1], True))]
    first = world.render_batch(scenes, list(range(len(scenes))))
    size = world.image_size
    assert first.shape == (len(scenes), size, size, 3) and first.dtype == np.uint8
    assert np.array_equal(first, world.render_batch(scenes, list(range(len(scenes)))))
    other = world.render_batch(scenes, [s + 1000 for s in range(len(scenes))])
    assert all(not np.array_equal(a, b) for a, b in zip(first, other, strict=True))


def test_night_scenes_are_dark() -> None:
    day = np.mean([np.asarray(OBJECTS_WORLD.render(Scene("house"), s)).mean() for s in range(20)])
    night = np.mean([np.asarray(OBJECTS_WORLD.render(Scene("house", implicit=True), s)).mean() for s in range(20)])
    assert night < 0.5 * day


def test_underwater_scenes_are_blue_green() -> None:
    def blue_share(implicit: bool) -> float:
        pixels = np.stack([np.asarray(ICONS_WORLD.render(Scene("chair", implicit=implicit), s)) for s in range(20)])
        pixels = pixels.astype(float)
        return float((pixels[..., 2] / (pixels.sum(-1) + 1)).mean())

    assert blue_share(True) > blue_share(False) + 0.05


def test_the_two_worlds_share_nothing_but_the_text_encoder() -> None:
    a, b = OBJECTS_WORLD, ICONS_WORLD
    assert not set(a.objects) & set(b.objects) and not set(a.styles) & set(b.styles) and a.implicit != b.implicit
    assert a.image_size != b.image_size and a.renderer != b.renderer and a.prompt_template != b.prompt_template
    assert a.unet_config["sample_size"] != b.unet_config["sample_size"]
    assert len(a.unet_config["block_out_channels"]) != len(b.unet_config["block_out_channels"])
    assert a.unet_config["cross_attention_dim"] == b.unet_config["cross_attention_dim"]  # both MiniLM


@ALL_WORLDS
def test_each_model_folder_lists_the_concepts_its_world_draws(world: World) -> None:
    """The engine reads a model's neighbours from this file (the demo's audit and grid); it must be the world's."""
    shipped = json.loads((world.model_dir / CONCEPTS_FILE).read_text())
    assert shipped == json.loads(json.dumps(world.list_concepts()))


@ALL_WORLDS
def test_world_has_groups_styles_an_implicit_concept_and_four_splits(world: World) -> None:
    concepts = world.list_concepts()
    assert len(concepts["groups"]) >= 5 and all(len(m) >= 4 for m in concepts["groups"].values())
    assert len(concepts["styles"]) >= 3 and concepts["implicit"] == world.implicit
    assert len(set(world.objects)) == len(world.objects)
    assert len(world.object_splits) == 4
    for erased, kept in world.object_splits:
        assert len(erased) == len(kept) == 5 and not set(erased) & set(kept)
        assert len({world.group_of[c] for c in erased}) == 5  # one per group
    assert all(len(world.synonyms[c]) >= 2 and world.synonyms[c][0] == c for c in world.synonyms)


@ALL_WORLDS
def test_captions_vary_in_wording(world: World) -> None:
    captions = CaptionSet.build(0, world)
    first = world.objects[0]
    wordings = [captions.captions[i] for i in captions.by_kind[Scene(first)]]
    assert len(set(wordings)) >= 5
    concept, synonyms = next(iter(world.synonyms.items()))
    implicit = [captions.captions[i] for i in captions.by_kind[Scene(concept, implicit=True)]]
    assert any(synonyms[1] in c for c in captions.captions) and len(set(implicit)) >= 5


@ALL_WORLDS
def test_most_implicit_prompts_never_say_the_word(world: World) -> None:
    prompts = world.implicit_prompts()
    assert len(prompts) >= 40 and sum(world.implicit in p for p in prompts) < len(prompts) / 2


@ALL_WORLDS
def test_shipped_weights_match_the_model_card(world: World) -> None:
    folder = _shipped(world).model_dir
    card = (folder / "MODEL_CARD.md").read_text()
    for name in WEIGHT_FILES:
        digest = hashlib.sha256((folder / name).read_bytes()).hexdigest()
        assert f"`{name}`: sha256 `{digest}`" in card
    assert sum((folder / name).stat().st_size for name in WEIGHT_FILES) < 30 * 2**20


@ALL_WORLDS
def test_world_model_loads_as_a_diffusers_backend(world: World) -> None:
    demo = load_demo("cpu", _shipped(world).model_dir)
    side = world.unet_config["sample_size"]
    assert demo.backend.arch == "sd1" and demo.backend.latent_shape() == (4, side, side)
    cond = demo.backend.encode_prompts([world.object_prompt(world.objects[0]), ""])
    assert cond.context.shape == (2, 16, 384)
    with torch.no_grad():
        eps = demo.backend.predict_noise(torch.randn(2, 4, side, side), torch.tensor([10, 900]), cond)
    assert eps.shape == (2, 4, side, side) and torch.isfinite(eps).all()


def test_the_demo_model_is_the_objects_world() -> None:
    assert OBJECTS_WORLD.model_dir == DEMO_DIR


@ALL_WORLDS
def test_classifier_recognises_fresh_renders(world: World) -> None:
    fresh = RenderedSet.make(500, 424242, _shipped(world))  # a seed no training set used
    classifier = load_classifier(world)
    objects, styles, implicit = fresh.labels()
    with torch.no_grad():
        o, s, n = classifier(to_tensor(fresh.images))
    assert (o.argmax(1) == objects).float().mean() >= 0.98
    assert (s.argmax(1) == styles).float().mean() >= 0.95
    assert ((n > 0).float() == implicit).float().mean() >= 0.98


@ALL_WORLDS
def test_shipped_model_draws_every_style(world: World) -> None:
    # Each style must survive the autoencoder and be learnable, or the styles task cannot measure preservation.
    from erasure_core.preview import generate_images

    demo, classifier = load_demo("cpu", _shipped(world).model_dir), load_classifier(world)
    objects = world.objects[::5]
    prompts = [world.style_prompt(o, s) for s in world.styles for o in objects for _ in range(2)]
    images = generate_images(demo.backend, demo.vae, prompts, list(range(len(prompts))), steps=15)
    with torch.no_grad():
        styles = classifier(to_tensor(images))[1].argmax(1).view(len(world.styles), -1)
    for i, style in enumerate(world.styles):
        assert (styles[i] == world.style_labels.index(style)).float().mean() >= 0.5, style
