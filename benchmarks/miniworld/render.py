"""Procedural renderer of the miniature world: deterministic given a seed, 32x32 RGB by default.

Objects are drawn at 64x64 from simple shapes in a unit box, with random colour, size, position, rotation and
background, then downsampled, so a model has to generalise rather than memorise pixels. Styles change how any
object is drawn; night scenes get a dark sky with stars.
"""

from __future__ import annotations

import colorsys
import random
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw

from .world import OBJECTS_WORLD, Scene

CANVAS = 64
STRIPE_PERIOD = 20  # canvas pixels; 6.5-10 px in the 32x32 image after the object's scaling
DOT_SPACING, DOT_RADIUS = 18, 6
R = 22.0  # half-size of the unit box in pixels at 64x64

Shape = Callable[[ImageDraw.ImageDraw, tuple, tuple, int], None]


def _p(x: float, y: float) -> tuple[float, float]:
    return (CANVAS / 2 + x * R, CANVAS / 2 + y * R)


def _box(x0: float, y0: float, x1: float, y1: float) -> list[tuple[float, float]]:
    return [_p(x0, y0), _p(x1, y1)]


def _poly(d: ImageDraw.ImageDraw, points: list[tuple[float, float]], fill, line, w: int) -> None:
    d.polygon([_p(x, y) for x, y in points], fill=fill, outline=line, width=w)


def _ellipse(d, x0, y0, x1, y1, fill, line, w) -> None:
    d.ellipse(_box(x0, y0, x1, y1), fill=fill, outline=line, width=w)


def _rect(d, x0, y0, x1, y1, fill, line, w) -> None:
    d.rectangle(_box(x0, y0, x1, y1), fill=fill, outline=line, width=w)


def _line(d, points, line, w) -> None:
    d.line([_p(x, y) for x, y in points], fill=line, width=w)


def _wheels(d, xs, y, r, line, w) -> None:
    for x in xs:
        _ellipse(d, x - r, y - r, x + r, y + r, (40, 40, 40, 255), line, w)


# -- fruits: round shapes with stems ----------------------------------------------------------------------------
def apple(d, f, ink, w):
    _ellipse(d, -0.8, -0.6, 0.8, 0.9, f, ink, w)
    _line(d, [(0, -0.6), (0.1, -1.0)], ink, w + 1)
    _poly(d, [(0.1, -0.85), (0.6, -1.0), (0.3, -0.7)], (60, 160, 60, 255), ink, 1)


def banana(d, f, ink, w):
    _poly(
        d,
        [(-0.9, -0.5), (-0.5, 0.3), (0.2, 0.6), (0.9, 0.2), (0.95, 0.35), (0.2, 0.85), (-0.6, 0.6), (-1.0, -0.3)],
        f,
        ink,
        w,
    )


def orange(d, f, ink, w):
    _ellipse(d, -0.85, -0.85, 0.85, 0.85, f, ink, w)
    for x, y in ((-0.3, -0.2), (0.3, 0.1), (-0.1, 0.4), (0.35, -0.4)):
        _ellipse(d, x - 0.07, y - 0.07, x + 0.07, y + 0.07, ink, None, 1)


def pear(d, f, ink, w):
    _ellipse(d, -0.75, -0.1, 0.75, 0.95, f, ink, w)
    _ellipse(d, -0.45, -0.75, 0.45, 0.25, f, ink, w)
    _line(d, [(0, -0.75), (0.05, -1.05)], ink, w + 1)


def cherry(d, f, ink, w):
    _ellipse(d, -0.9, 0.1, -0.1, 0.9, f, ink, w)
    _ellipse(d, 0.1, 0.2, 0.9, 1.0, f, ink, w)
    _line(d, [(-0.5, 0.1), (0.1, -0.9), (0.5, 0.2)], ink, w)


# -- vehicles: bodies on wheels ------------------------------------------------------------------------------------
def car(d, f, ink, w):
    _rect(d, -1.0, -0.1, 1.0, 0.45, f, ink, w)
    _poly(d, [(-0.55, -0.1), (-0.35, -0.55), (0.35, -0.55), (0.55, -0.1)], f, ink, w)
    _wheels(d, (-0.55, 0.55), 0.5, 0.22, ink, w)


def truck(d, f, ink, w):
    _rect(d, -1.0, -0.7, 0.35, 0.45, f, ink, w)
    _rect(d, 0.4, -0.3, 1.0, 0.45, f, ink, w)
    _wheels(d, (-0.7, -0.1, 0.7), 0.5, 0.2, ink, w)


def bus(d, f, ink, w):
    _rect(d, -1.0, -0.6, 1.0, 0.45, f, ink, w)
    for x in (-0.8, -0.4, 0.0, 0.4):
        _rect(d, x, -0.45, x + 0.3, -0.1, (200, 230, 255, 255), ink, 1)
    _wheels(d, (-0.6, 0.6), 0.5, 0.2, ink, w)


def bicycle(d, f, ink, w):
    for x in (-0.6, 0.6):
        _ellipse(d, x - 0.4, 0.0, x + 0.4, 0.8, None, f, w + 1)
    _line(d, [(-0.6, 0.4), (-0.1, -0.2), (0.4, -0.2), (0.6, 0.4), (0.0, 0.4), (-0.1, -0.2)], f, w + 1)
    _line(d, [(0.4, -0.2), (0.35, -0.5)], ink, w)


def boat(d, f, ink, w):
    _poly(d, [(-1.0, 0.3), (1.0, 0.3), (0.65, 0.8), (-0.65, 0.8)], f, ink, w)
    _line(d, [(0.0, 0.3), (0.0, -1.0)], ink, w)
    _poly(d, [(0.05, -0.95), (0.05, 0.2), (0.8, 0.2)], (245, 245, 235, 255), ink, w)


# -- buildings: walls and roofs ------------------------------------------------------------------------------------
def house(d, f, ink, w):
    _rect(d, -0.7, -0.1, 0.7, 0.9, f, ink, w)
    _poly(d, [(-0.9, -0.1), (0.0, -0.85), (0.9, -0.1)], f, ink, w)
    _rect(d, -0.15, 0.4, 0.15, 0.9, ink, ink, 1)


def church(d, f, ink, w):
    _rect(d, -0.8, 0.0, 0.4, 0.9, f, ink, w)
    _rect(d, 0.4, -0.5, 0.85, 0.9, f, ink, w)
    _poly(d, [(0.35, -0.5), (0.625, -0.95), (0.9, -0.5)], f, ink, w)
    _line(d, [(0.625, -0.95), (0.625, -1.2)], ink, w)
    _line(d, [(0.5, -1.1), (0.75, -1.1)], ink, w)
    _poly(d, [(-0.9, 0.0), (-0.2, -0.5), (0.45, 0.0)], f, ink, w)


def tower(d, f, ink, w):
    _rect(d, -0.35, -0.7, 0.35, 1.0, f, ink, w)
    for x in (-0.35, -0.07, 0.21):
        _rect(d, x, -0.95, x + 0.14, -0.7, f, ink, w)
    _rect(d, -0.1, -0.3, 0.1, 0.0, ink, ink, 1)


def castle(d, f, ink, w):
    _rect(d, -0.6, -0.1, 0.6, 0.9, f, ink, w)
    for x in (-1.0, 0.6):
        _rect(d, x, -0.6, x + 0.4, 0.9, f, ink, w)
        for dx in (0.0, 0.28):
            _rect(d, x + dx, -0.8, x + dx + 0.12, -0.6, f, ink, w)
    _poly(d, [(-0.2, 0.9), (-0.2, 0.45), (0.0, 0.3), (0.2, 0.45), (0.2, 0.9)], ink, ink, 1)


def barn(d, f, ink, w):
    _rect(d, -0.9, -0.1, 0.9, 0.9, f, ink, w)
    _poly(d, [(-1.0, -0.1), (-0.6, -0.7), (0.6, -0.7), (1.0, -0.1)], f, ink, w)
    _rect(d, -0.35, 0.3, 0.35, 0.9, None, ink, w)
    _line(d, [(-0.35, 0.3), (0.35, 0.9)], ink, w)
    _line(d, [(0.35, 0.3), (-0.35, 0.9)], ink, w)


# -- plants ---------------------------------------------------------------------------------------------------
def tree(d, f, ink, w):
    _rect(d, -0.15, 0.2, 0.15, 1.0, (120, 80, 40, 255), ink, w)
    _ellipse(d, -0.8, -1.0, 0.8, 0.45, f, ink, w)


def flower(d, f, ink, w):
    _line(d, [(0.0, 0.0), (0.0, 1.0)], (50, 140, 50, 255), w + 1)
    for dx, dy in (
        (0, -0.45),
        (0.45, 0),
        (0, 0.45),
        (-0.45, 0),
        (0.32, -0.32),
        (-0.32, 0.32),
        (0.32, 0.32),
        (-0.32, -0.32),
    ):
        _ellipse(d, dx - 0.28, dy - 0.28 - 0.3, dx + 0.28, dy + 0.28 - 0.3, f, ink, 1)
    _ellipse(d, -0.2, -0.5, 0.2, -0.1, (250, 220, 60, 255), ink, 1)


def mushroom(d, f, ink, w):
    _rect(d, -0.2, -0.1, 0.2, 0.9, (235, 225, 200, 255), ink, w)
    d.pieslice(_box(-0.9, -0.9, 0.9, 0.7), 180, 360, fill=f, outline=ink, width=w)


def cactus(d, f, ink, w):
    _rect(d, -0.2, -0.9, 0.2, 1.0, f, ink, w)
    _rect(d, -0.7, -0.1, -0.2, 0.15, f, ink, w)
    _rect(d, -0.7, -0.6, -0.45, 0.15, f, ink, w)
    _rect(d, 0.2, 0.1, 0.65, 0.35, f, ink, w)
    _rect(d, 0.45, -0.4, 0.7, 0.35, f, ink, w)


def leaf(d, f, ink, w):
    _poly(d, [(-0.9, 0.8), (-0.6, -0.2), (0.1, -0.8), (0.9, -0.9), (0.7, -0.1), (0.1, 0.6)], f, ink, w)
    _line(d, [(-1.0, 0.95), (0.75, -0.75)], ink, w)


# -- tools ----------------------------------------------------------------------------------------------------
def cup(d, f, ink, w):
    _poly(d, [(-0.7, -0.6), (0.5, -0.6), (0.4, 0.8), (-0.6, 0.8)], f, ink, w)
    d.arc(_box(0.2, -0.35, 0.95, 0.45), 270, 90, fill=ink, width=w + 1)


def key(d, f, ink, w):
    _ellipse(d, -1.0, -0.4, -0.2, 0.4, f, ink, w)
    _ellipse(d, -0.75, -0.15, -0.45, 0.15, (0, 0, 0, 0), ink, 1)
    _rect(d, -0.25, -0.1, 1.0, 0.1, f, ink, w)
    _rect(d, 0.55, 0.1, 0.7, 0.4, f, ink, w)
    _rect(d, 0.8, 0.1, 0.95, 0.3, f, ink, w)


def umbrella(d, f, ink, w):
    d.pieslice(_box(-1.0, -0.9, 1.0, 0.5), 180, 360, fill=f, outline=ink, width=w)
    _line(d, [(0.0, -0.2), (0.0, 0.8)], ink, w + 1)
    d.arc(_box(-0.35, 0.6, 0.05, 1.0), 0, 180, fill=ink, width=w + 1)


def hammer(d, f, ink, w):
    _rect(d, -0.12, -0.4, 0.12, 1.0, (150, 100, 60, 255), ink, w)
    _rect(d, -0.8, -0.8, 0.8, -0.4, f, ink, w)


def bell(d, f, ink, w):
    _poly(d, [(-0.35, -0.8), (0.35, -0.8), (0.55, 0.1), (0.9, 0.6), (-0.9, 0.6), (-0.55, 0.1)], f, ink, w)
    _ellipse(d, -0.15, 0.55, 0.15, 0.85, ink, ink, 1)
    _ellipse(d, -0.12, -1.0, 0.12, -0.8, None, ink, w)


SHAPES: dict[str, Shape] = {name: globals()[name] for name in OBJECTS_WORLD.objects}


# -- styles, backgrounds, scenes --------------------------------------------------------------------------------
def _colour(rng: random.Random) -> tuple[int, int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.55, 1.0), rng.uniform(0.6, 1.0))
    return (int(r * 255), int(g * 255), int(b * 255), 255)


def _darker(c: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    return (c[0] // 3, c[1] // 3, c[2] // 3, 255)


def _pattern(kind: str, rng: random.Random) -> Image.Image:
    """A mask (L) of stripes or dots covering the canvas.

    Coarse on purpose: the autoencoder keeps one latent cell per 4x4 pixels of the 32x32 image, and finer patterns
    (3 px stripes, 2 px dots) did not survive it (style accuracy on its reconstructions was 0%), so the model could
    never learn to draw them.
    """
    mask = Image.new("L", (CANVAS, CANVAS), 0)
    d = ImageDraw.Draw(mask)
    if kind == "striped":
        offset = rng.randrange(STRIPE_PERIOD)
        for x in range(offset - CANVAS, 2 * CANVAS, STRIPE_PERIOD):
            d.line([(x, 0), (x + CANVAS, CANVAS)], fill=255, width=STRIPE_PERIOD // 2 - 1)
    else:
        offset = rng.randrange(DOT_SPACING // 2)
        for row, y in enumerate(range(offset, CANVAS + DOT_RADIUS, DOT_SPACING)):
            for x in range(offset + (row % 2) * DOT_SPACING // 2, CANVAS + DOT_RADIUS, DOT_SPACING):
                d.ellipse([x - DOT_RADIUS, y - DOT_RADIUS, x + DOT_RADIUS, y + DOT_RADIUS], fill=255)
    return mask


def _object_layer(scene: Scene, rng: random.Random) -> Image.Image:
    layer = Image.new("RGBA", (CANVAS, CANVAS), (0, 0, 0, 0))
    d = ImageDraw.Draw(layer)
    fill = _colour(rng)
    if scene.style == "sketch":  # outlines only, in one dark or bright ink
        ink = (
            _colour(rng) if scene.implicit else rng.choice([(30, 30, 30, 255), _colour(rng)])
        )  # visible on dark skies
        SHAPES[scene.obj](d, None, ink, 2)
        return layer
    SHAPES[scene.obj](d, fill, _darker(fill), 2)
    if scene.style in ("striped", "dotted"):
        second = _colour(rng)
        overlay = Image.new("RGBA", (CANVAS, CANVAS), second)
        mask = Image.composite(_pattern(scene.style, rng), Image.new("L", (CANVAS, CANVAS), 0), layer.getchannel("A"))
        layer = Image.composite(overlay, layer, mask)
    elif scene.style == "mosaic":
        small = layer.resize((CANVAS // 5, CANVAS // 5), Image.Resampling.BILINEAR)
        layer = small.resize((CANVAS, CANVAS), Image.Resampling.NEAREST)
    return layer


def _background(night: bool, rng: random.Random) -> Image.Image:
    if night:
        top = (rng.randrange(0, 25), rng.randrange(0, 25), rng.randrange(20, 60))
        bottom = tuple(min(255, c + rng.randrange(10, 30)) for c in top)
    else:
        top = tuple(
            int(v * 255) for v in colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.05, 0.35), rng.uniform(0.8, 1.0))
        )
        bottom = tuple(
            int(v * 255) for v in colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.05, 0.35), rng.uniform(0.7, 1.0))
        )
    ramp = np.linspace(0.0, 1.0, CANVAS)[:, None, None]
    pixels = (1 - ramp) * np.array(top)[None, None] + ramp * np.array(bottom)[None, None]
    image = Image.fromarray(np.repeat(pixels, CANVAS, axis=1).astype(np.uint8), "RGB")
    if night:
        d = ImageDraw.Draw(image)
        for _ in range(rng.randrange(10, 20)):
            x, y = rng.randrange(CANVAS), rng.randrange(CANVAS)
            d.rectangle([x, y, x + 1, y + 1], fill=(255, 255, 230))
    return image


def render(scene: Scene, seed: int, size: int = 32) -> Image.Image:
    """One image of `scene`; the same (scene, seed) always gives the same pixels."""
    rng = random.Random(f"{scene.obj}|{scene.style}|{scene.implicit}|{seed}")
    layer = _object_layer(scene, rng)
    scale = rng.uniform(0.65, 1.0)
    side = int(CANVAS * scale)
    layer = layer.resize((side, side), Image.Resampling.BILINEAR).rotate(
        rng.uniform(-20, 20), resample=Image.Resampling.BILINEAR, expand=False
    )
    image = _background(scene.implicit, rng)
    x = (CANVAS - side) // 2 + rng.randint(-(CANVAS - side) // 2, (CANVAS - side) // 2)
    y = (CANVAS - side) // 2 + rng.randint(-(CANVAS - side) // 2, (CANVAS - side) // 2)
    image.paste(layer, (x, y), layer)
    return image.resize((size, size), Image.Resampling.LANCZOS) if size != CANVAS else image
