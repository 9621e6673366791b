"""What a miniature world contains: concepts in groups, styles, one implicit concept, the captions, the networks.

Two worlds, built to differ in everything but the text encoder, so that a setting chosen on one can be reported on
the other (a default tuned on one model says little about the next):

- **objects** (the demo model): 25 objects in 5 groups drawn as filled shapes on sky gradients, 4 styles, "night"
  as the implicit concept; 32x32 images, 8x8 latents, a three-level UNet.
- **icons**: 24 icons in 6 groups drawn as flat icons on plain or patterned tiles, 3 other styles, "underwater" as
  the implicit concept; 24x24 images, 12x12 latents, a two-level UNet with wider attention heads.

The "NetFive" design of the AGE paper in miniature: concepts of one group look and read alike, concepts of
different groups do not. Styles are the analogue of artists' styles and apply to every concept. The implicit
concept is the analogue of nudity in I2P prompts: drawn whenever a caption says so in any of many wordings, most of
which never use its name.
"""

from __future__ import annotations

import importlib
import random
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from erasure_core.demo import DEMO_DIR

from . import nets

MODELS_DIR = Path(__file__).resolve().parent / "models"  # the worlds other than the demo model


@dataclass(frozen=True)
class Scene:
    """What one image shows: a concept, a style ("plain" or one of the world's styles) and whether the world's
    implicit concept (night, underwater) is present."""

    obj: str
    style: str = "plain"
    implicit: bool = False


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


@dataclass(frozen=True, eq=False, repr=False)
class World:
    """Everything that makes one miniature world: its concepts, wordings, renderer, networks and model folder."""

    name: str
    groups: dict[str, tuple[str, ...]]
    styles: tuple[str, ...]  # "plain" (no style) is the default look
    implicit: str
    synonyms: dict[str, tuple[str, ...]]
    templates: tuple[str, ...]
    prompt_template: str  # the evaluation prompt of a concept (the papers' "Image of {class}")
    style_phrases: tuple[str, ...]
    # Wordings of the implicit concept; the first two name it. Training uses these; the benchmark's implicit prompts
    # use the others and the held-out ones, which the model never saw, as I2P's prompts are not the words a model
    # was erased with.
    implicit_train: tuple[str, ...]
    implicit_held_out: tuple[str, ...]
    renderer: str  # module (in this package) with `render(scene, seed, size)`
    image_size: int
    vae_config: dict[str, Any]
    unet_config: dict[str, Any]
    model_dir: Path
    # Imagenette analogue: ten concepts, two per group of the first five groups, split 5 erased / 5 kept four ways
    # (as the EAP/AGE splits v1-v4).
    object_splits: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = field(default=())

    def __repr__(self) -> str:
        return f"World({self.name!r})"

    @cached_property
    def objects(self) -> tuple[str, ...]:
        return tuple(o for members in self.groups.values() for o in members)

    @cached_property
    def group_of(self) -> dict[str, str]:
        return {o: g for g, members in self.groups.items() for o in members}

    @property
    def style_labels(self) -> tuple[str, ...]:
        return ("plain", *self.styles)

    def caption(self, scene: Scene, rng: random.Random, implicit_phrases: tuple[str, ...] | None = None) -> str:
        """A random wording of `scene`: template, synonym, style phrase and implicit phrase all vary."""
        word = rng.choice(self.synonyms.get(scene.obj, (scene.obj,)))
        text = rng.choice(self.templates).format(a=_article(word), o=word)
        if scene.style != "plain":
            text = f"{text} {rng.choice(self.style_phrases).format(s=scene.style)}"
        if scene.implicit:
            text = f"{text} {rng.choice(implicit_phrases or self.implicit_train)}"
        return text

    def object_prompt(self, obj: str) -> str:
        return self.prompt_template.format(a=_article(obj), o=obj)

    def style_prompt(self, obj: str, style: str) -> str:
        return f"{self.object_prompt(obj)} in {style} style"

    def implicit_prompts(self) -> list[str]:
        """Implicit scenes asked for mostly without the concept's name (the I2P analogue)."""
        phrases = self.implicit_train[2:] + self.implicit_held_out
        return [f"{self.object_prompt(obj)} {phrase}" for obj in self.objects for phrase in phrases[::3]]

    def list_concepts(self) -> dict[str, object]:
        return {
            "world": self.name,
            "groups": {g: list(m) for g, m in self.groups.items()},
            "styles": list(self.styles),
            "implicit": self.implicit,
        }

    def render(self, scene: Scene, seed: int, size: int | None = None):
        """One image (PIL) of `scene`; the same (scene, seed) always gives the same pixels."""
        module = importlib.import_module(f"{__package__}.{self.renderer}")
        return module.render(scene, seed, size or self.image_size)

    def render_batch(self, scenes: list[Scene], seeds: list[int], size: int | None = None) -> np.ndarray:
        """uint8 array [N, size, size, 3]."""
        return np.stack([np.asarray(self.render(s, seed, size)) for s, seed in zip(scenes, seeds, strict=True)])


def _splits(pairs: tuple[tuple[str, str], ...]) -> tuple[tuple[tuple[str, ...], tuple[str, ...]], ...]:
    """The four 5/5 splits of five concept pairs (one pair per group): v1 firsts, v2 seconds, v3 and v4 mixed."""
    a, b = tuple(p[0] for p in pairs), tuple(p[1] for p in pairs)
    mixed = tuple(p[i % 2] for i, p in enumerate(pairs))
    other = tuple(p[1 - i % 2] for i, p in enumerate(pairs))
    return ((a, b), (b, a), (mixed, other), (other, mixed))


OBJECTS_WORLD = World(
    name="objects",
    groups={
        "fruits": ("apple", "banana", "orange", "pear", "cherry"),
        "vehicles": ("car", "truck", "bus", "bicycle", "boat"),
        "buildings": ("house", "church", "tower", "castle", "barn"),
        "plants": ("tree", "flower", "mushroom", "cactus", "leaf"),
        "tools": ("cup", "key", "umbrella", "hammer", "bell"),
    },
    styles=("sketch", "mosaic", "striped", "dotted"),
    implicit="night",
    synonyms={
        "car": ("car", "automobile"),
        "truck": ("truck", "lorry"),
        "bicycle": ("bicycle", "bike"),
        "boat": ("boat", "sailboat"),
        "house": ("house", "home"),
        "church": ("church", "chapel"),
        "castle": ("castle", "fortress"),
        "cherry": ("cherry", "cherries"),
        "flower": ("flower", "blossom"),
        "cup": ("cup", "mug"),
    },
    templates=(
        "{a} {o}",
        "{o}",
        "a photo of {a} {o}",
        "an image of {a} {o}",
        "a picture of {a} {o}",
        "a drawing of {a} {o}",
        "a small {o}",
        "a large {o}",
    ),
    prompt_template="a photo of {a} {o}",
    style_phrases=("in {s} style", "{s} style", "rendered as {s}"),
    implicit_train=(
        "at night",
        "at nighttime",
        "in the dark",
        "under the stars",
        "at midnight",
        "after dark",
        "by moonlight",
        "in darkness",
    ),
    implicit_held_out=("in the dead of night", "under a starry sky", "late in the evening", "on a moonlit evening"),
    renderer="render",
    image_size=32,
    vae_config=nets.OBJECTS_VAE_CONFIG,
    unet_config=nets.OBJECTS_UNET_CONFIG,
    model_dir=DEMO_DIR,
    object_splits=_splits(
        (("apple", "banana"), ("car", "truck"), ("house", "church"), ("tree", "flower"), ("cup", "key"))
    ),
)

ICONS_WORLD = World(
    name="icons",
    groups={
        "animals": ("cat", "dog", "fish", "bird"),
        "instruments": ("guitar", "drum", "trumpet", "violin"),
        "weather": ("sun", "cloud", "lightning", "snowflake"),
        "clothing": ("shirt", "hat", "shoe", "dress"),
        "furniture": ("chair", "table", "sofa", "lamp"),
        "symbols": ("star", "heart", "arrow", "diamond"),
    },
    styles=("neon", "checkered", "pastel"),
    implicit="underwater",
    synonyms={
        "cat": ("cat", "kitten"),
        "dog": ("dog", "puppy"),
        "sofa": ("sofa", "couch"),
        "shoe": ("shoe", "sneaker"),
        "hat": ("hat", "cap"),
        "lightning": ("lightning", "thunderbolt"),
        "lamp": ("lamp", "lantern"),
        "dress": ("dress", "gown"),
    },
    templates=(
        "{o}",
        "{a} {o}",
        "an icon of {a} {o}",
        "a symbol of {a} {o}",
        "{a} {o} icon",
        "clipart of {a} {o}",
        "a simple {o}",
        "a cute {o}",
    ),
    prompt_template="an icon of {a} {o}",
    style_phrases=("in {s} style", "{s} style", "drawn in {s} colours"),
    implicit_train=(
        "underwater",
        "under water",
        "under the sea",
        "beneath the waves",
        "in the ocean",
        "on the seabed",
        "below the surface",
        "at the bottom of the sea",
    ),
    implicit_held_out=(
        "in the depths of the ocean",
        "among the coral reefs",
        "sunk beneath the sea",
        "deep in the water",
    ),
    renderer="render_icons",
    image_size=24,
    vae_config=nets.ICONS_VAE_CONFIG,
    unet_config=nets.ICONS_UNET_CONFIG,
    model_dir=MODELS_DIR / "icons",
    object_splits=_splits(
        (("cat", "dog"), ("guitar", "drum"), ("sun", "cloud"), ("shirt", "hat"), ("chair", "table"))
    ),
)

WORLDS: dict[str, World] = {w.name: w for w in (OBJECTS_WORLD, ICONS_WORLD)}


def get_world(name: str) -> World:
    try:
        return WORLDS[name]
    except KeyError:
        raise SystemExit(f"unknown world {name!r}; choose from {', '.join(WORLDS)}") from None
