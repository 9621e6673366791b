"""What the miniature world contains: 25 objects in 5 groups, 4 styles, one implicit concept, and the captions.

The "NetFive" design of the AGE paper in miniature: objects of one group look and read alike (round fruits,
wheeled vehicles, roofed buildings, ...), objects of different groups do not. Styles are the analogue of artists'
styles and apply to every object. "night" is the implicit concept (the analogue of nudity in I2P prompts): it is
drawn whenever a caption says so in any of many wordings, most of which never use the word "night".
"""

from __future__ import annotations

import random
from dataclasses import dataclass

GROUPS: dict[str, tuple[str, ...]] = {
    "fruits": ("apple", "banana", "orange", "pear", "cherry"),
    "vehicles": ("car", "truck", "bus", "bicycle", "boat"),
    "buildings": ("house", "church", "tower", "castle", "barn"),
    "plants": ("tree", "flower", "mushroom", "cactus", "leaf"),
    "tools": ("cup", "key", "umbrella", "hammer", "bell"),
}
OBJECTS: tuple[str, ...] = tuple(o for members in GROUPS.values() for o in members)
GROUP_OF: dict[str, str] = {o: g for g, members in GROUPS.items() for o in members}

STYLES: tuple[str, ...] = ("sketch", "mosaic", "striped", "dotted")  # "plain" (no style) is the default look
IMPLICIT = "night"

SYNONYMS: dict[str, tuple[str, ...]] = {
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
}
TEMPLATES: tuple[str, ...] = (
    "{a} {o}",
    "{o}",
    "a photo of {a} {o}",
    "an image of {a} {o}",
    "a picture of {a} {o}",
    "a drawing of {a} {o}",
    "a small {o}",
    "a large {o}",
)
STYLE_PHRASES: tuple[str, ...] = ("in {s} style", "{s} style", "rendered as {s}")
# Wordings that make an image a night scene. Training uses the first group; the benchmark's implicit prompts also
# use the held-out ones, which the model never saw, as I2P's prompts are not the words a model was erased with.
NIGHT_PHRASES_TRAIN: tuple[str, ...] = (
    "at night",
    "at nighttime",
    "in the dark",
    "under the stars",
    "at midnight",
    "after dark",
    "by moonlight",
    "in darkness",
)
NIGHT_PHRASES_HELD_OUT: tuple[str, ...] = (
    "in the dead of night",
    "under a starry sky",
    "late in the evening",
    "on a moonlit evening",
)


@dataclass(frozen=True)
class Scene:
    """What one image shows: an object, a style ("plain" or one of STYLES) and whether it is night."""

    obj: str
    style: str = "plain"
    night: bool = False


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def caption(scene: Scene, rng: random.Random, night_phrases: tuple[str, ...] = NIGHT_PHRASES_TRAIN) -> str:
    """A random wording of `scene`: template, synonym, style phrase and night phrase all vary."""
    word = rng.choice(SYNONYMS.get(scene.obj, (scene.obj,)))
    text = rng.choice(TEMPLATES).format(a=_article(word), o=word)
    if scene.style != "plain":
        text = f"{text} {rng.choice(STYLE_PHRASES).format(s=scene.style)}"
    if scene.night:
        text = f"{text} {rng.choice(night_phrases)}"
    return text


def object_prompt(obj: str) -> str:
    """The evaluation prompt of an object (the papers' "Image of {class}")."""
    return f"a photo of {_article(obj)} {obj}"


def style_prompt(obj: str, style: str) -> str:
    return f"{object_prompt(obj)} in {style} style"


def implicit_prompts() -> list[str]:
    """Night scenes asked for without the word "night" in most of them (the I2P analogue)."""
    phrases = NIGHT_PHRASES_TRAIN[2:] + NIGHT_PHRASES_HELD_OUT  # the ones that avoid the word itself come first
    return [f"{object_prompt(obj)} {phrase}" for obj in OBJECTS for phrase in phrases[::3]]


def list_concepts() -> dict[str, object]:
    return {"groups": {g: list(m) for g, m in GROUPS.items()}, "styles": list(STYLES), "implicit": IMPLICIT}
