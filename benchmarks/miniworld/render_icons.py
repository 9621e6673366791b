"""Procedural renderer of the icons world: flat icons on tiles, deterministic given a seed, 24x24 RGB by default.

Drawn at 48x48 and downsampled. Unlike the objects world (filled shapes on sky gradients, 32x32), icons sit on
flat or patterned tiles; the styles recolour the whole tile (neon: glowing outlines on black; checkered: a
chequerboard behind the icon; pastel: pale colours) and the implicit concept, underwater, tints the tile blue-green
and adds bubbles. Concepts of one group share a silhouette family (animals: bodies with heads, instruments: bodies
with necks or tubes, ...).
"""

from __future__ import annotations

import colorsys
import math
import random
from collections.abc import Callable

from PIL import Image, ImageDraw, ImageFilter

from .world import ICONS_WORLD, Scene

CANVAS = 48
CHECK = 8  # chequerboard cell in canvas pixels (4 px in the 24x24 image: two latent cells)
R = 17.0  # half-size of the unit box in pixels

Shape = Callable[[ImageDraw.ImageDraw, tuple | None, tuple, int], None]


def _p(x: float, y: float) -> tuple[float, float]:
    return (CANVAS / 2 + x * R, CANVAS / 2 + y * R)


def _ellipse(d, cx, cy, rx, ry, fill, ink, w) -> None:
    d.ellipse([_p(cx - rx, cy - ry), _p(cx + rx, cy + ry)], fill=fill, outline=ink, width=w)


def _rect(d, x0, y0, x1, y1, fill, ink, w) -> None:
    d.rectangle([_p(x0, y0), _p(x1, y1)], fill=fill, outline=ink, width=w)


def _poly(d, points, fill, ink, w) -> None:
    d.polygon([_p(x, y) for x, y in points], fill=fill, outline=ink, width=w)


def _line(d, points, ink, w) -> None:
    d.line([_p(x, y) for x, y in points], fill=ink, width=w)


# -- animals: a body and a head ------------------------------------------------------------------------------
def cat(d, f, ink, w):
    _ellipse(d, 0.15, 0.35, 0.65, 0.45, f, ink, w)
    _ellipse(d, -0.5, -0.3, 0.38, 0.35, f, ink, w)
    _poly(d, [(-0.85, -0.5), (-0.8, -1.0), (-0.55, -0.62)], f, ink, w)
    _poly(d, [(-0.45, -0.62), (-0.2, -1.0), (-0.15, -0.5)], f, ink, w)
    _line(d, [(0.8, 0.3), (1.0, -0.4)], ink, w + 1)


def dog(d, f, ink, w):
    _ellipse(d, 0.15, 0.35, 0.65, 0.42, f, ink, w)
    _ellipse(d, -0.5, -0.3, 0.38, 0.33, f, ink, w)
    _ellipse(d, -0.9, -0.15, 0.15, 0.35, f, ink, w)
    _ellipse(d, -0.1, -0.15, 0.15, 0.35, f, ink, w)
    _line(d, [(0.8, 0.2), (1.0, 0.0)], ink, w + 1)


def fish(d, f, ink, w):
    _ellipse(d, -0.2, 0.0, 0.7, 0.45, f, ink, w)
    _poly(d, [(0.45, 0.0), (1.0, -0.5), (1.0, 0.5)], f, ink, w)
    _ellipse(d, -0.6, -0.1, 0.08, 0.08, ink, None, 1)


def bird(d, f, ink, w):
    _ellipse(d, 0.1, 0.2, 0.6, 0.4, f, ink, w)
    _ellipse(d, -0.55, -0.35, 0.3, 0.3, f, ink, w)
    _poly(d, [(-0.85, -0.4), (-1.1, -0.3), (-0.85, -0.22)], ink, ink, 1)
    _poly(d, [(0.0, 0.1), (0.5, -0.6), (0.6, 0.1)], f, ink, w)


# -- instruments: a body with a neck or a tube ----------------------------------------------------------------
def guitar(d, f, ink, w):
    _ellipse(d, 0.0, 0.5, 0.5, 0.45, f, ink, w)
    _ellipse(d, 0.0, 0.0, 0.38, 0.32, f, ink, w)
    _rect(d, -0.08, -1.0, 0.08, 0.0, ink, ink, 1)
    _ellipse(d, 0.0, 0.5, 0.12, 0.12, ink, None, 1)


def drum(d, f, ink, w):
    _rect(d, -0.75, -0.3, 0.75, 0.6, f, ink, w)
    _ellipse(d, 0.0, -0.3, 0.75, 0.25, f, ink, w)
    _line(d, [(-0.9, -1.0), (-0.2, -0.4)], ink, w + 1)
    _line(d, [(0.9, -1.0), (0.2, -0.4)], ink, w + 1)


def trumpet(d, f, ink, w):
    _rect(d, -1.0, -0.12, 0.4, 0.12, f, ink, w)
    _poly(d, [(0.3, -0.1), (1.0, -0.55), (1.0, 0.55), (0.3, 0.1)], f, ink, w)
    for x in (-0.5, -0.25, 0.0):
        _rect(d, x - 0.06, -0.5, x + 0.06, -0.12, ink, ink, 1)


def violin(d, f, ink, w):
    _ellipse(d, 0.0, 0.45, 0.38, 0.38, f, ink, w)
    _ellipse(d, 0.0, -0.05, 0.3, 0.28, f, ink, w)
    _rect(d, -0.06, -1.0, 0.06, -0.2, ink, ink, 1)
    _line(d, [(-0.9, 0.9), (0.9, -0.5)], ink, w)


# -- weather ------------------------------------------------------------------------------------------------
def sun(d, f, ink, w):
    for i in range(8):
        a = i * math.pi / 4
        _line(d, [(0.6 * math.cos(a), 0.6 * math.sin(a)), (1.0 * math.cos(a), 1.0 * math.sin(a))], ink, w + 1)
    _ellipse(d, 0.0, 0.0, 0.5, 0.5, f, ink, w)


def cloud(d, f, ink, w):
    for cx, cy, r in ((-0.45, 0.15, 0.4), (0.1, -0.15, 0.5), (0.55, 0.2, 0.38)):
        _ellipse(d, cx, cy, r, r, f, ink, w)
    _rect(d, -0.45, 0.1, 0.55, 0.55, f, None, 0)
    _line(d, [(-0.45, 0.55), (0.55, 0.55)], ink, w)


def lightning(d, f, ink, w):
    _poly(
        d, [(0.2, -1.0), (-0.5, 0.15), (-0.05, 0.15), (-0.3, 1.0), (0.55, -0.2), (0.1, -0.2), (0.4, -1.0)], f, ink, w
    )


def snowflake(d, f, ink, w):
    for i in range(3):
        a = i * math.pi / 3 + math.pi / 2
        x, y = math.cos(a), math.sin(a)
        _line(d, [(-0.95 * x, -0.95 * y), (0.95 * x, 0.95 * y)], f, w + 2)
        for s in (-1, 1):
            bx, by = 0.55 * s * x, 0.55 * s * y
            _line(d, [(bx, by), (bx + 0.3 * math.cos(a + 0.8), by + 0.3 * math.sin(a + 0.8))], f, w)
            _line(d, [(bx, by), (bx + 0.3 * math.cos(a - 0.8), by + 0.3 * math.sin(a - 0.8))], f, w)


# -- clothing --------------------------------------------------------------------------------------------------
def shirt(d, f, ink, w):
    _poly(
        d,
        [(-0.35, -0.8), (-1.0, -0.45), (-0.75, 0.0), (-0.5, -0.15), (-0.5, 0.9), (0.5, 0.9), (0.5, -0.15),
         (0.75, 0.0), (1.0, -0.45), (0.35, -0.8), (0.0, -0.6)],
        f, ink, w,
    )  # fmt: skip


def hat(d, f, ink, w):
    _ellipse(d, 0.0, 0.45, 1.0, 0.25, f, ink, w)
    _rect(d, -0.5, -0.6, 0.5, 0.45, f, ink, w)
    _rect(d, -0.5, 0.15, 0.5, 0.3, ink, ink, 1)


def shoe(d, f, ink, w):
    _poly(d, [(-0.9, -0.5), (-0.3, -0.5), (-0.2, 0.0), (0.9, 0.2), (1.0, 0.6), (-0.9, 0.6)], f, ink, w)
    _rect(d, -0.95, 0.5, 1.0, 0.7, ink, ink, 1)


def dress(d, f, ink, w):
    _poly(d, [(-0.3, -0.9), (0.3, -0.9), (0.35, -0.2), (0.9, 0.95), (-0.9, 0.95), (-0.35, -0.2)], f, ink, w)
    _line(d, [(-0.4, -0.2), (0.4, -0.2)], ink, w)


# -- furniture: legs and flat tops --------------------------------------------------------------------------------
def chair(d, f, ink, w):
    _rect(d, -0.5, -1.0, -0.3, 0.1, f, ink, w)
    _rect(d, -0.5, 0.0, 0.5, 0.2, f, ink, w)
    for x in (-0.45, 0.4):
        _rect(d, x, 0.2, x + 0.08, 0.95, ink, ink, 1)


def table(d, f, ink, w):
    _rect(d, -1.0, -0.25, 1.0, 0.0, f, ink, w)
    for x in (-0.85, 0.75):
        _rect(d, x, 0.0, x + 0.1, 0.85, ink, ink, 1)


def sofa(d, f, ink, w):
    _rect(d, -0.8, -0.5, 0.8, 0.1, f, ink, w)
    _rect(d, -0.8, 0.05, 0.8, 0.5, f, ink, w)
    _rect(d, -1.0, -0.2, -0.7, 0.55, f, ink, w)
    _rect(d, 0.7, -0.2, 1.0, 0.55, f, ink, w)
    _rect(d, -0.85, 0.55, -0.7, 0.75, ink, ink, 1)
    _rect(d, 0.7, 0.55, 0.85, 0.75, ink, ink, 1)


def lamp(d, f, ink, w):
    _poly(d, [(-0.3, -0.95), (0.3, -0.95), (0.65, -0.2), (-0.65, -0.2)], f, ink, w)
    _rect(d, -0.05, -0.2, 0.05, 0.75, ink, ink, 1)
    _ellipse(d, 0.0, 0.8, 0.5, 0.15, f, ink, w)


# -- symbols ------------------------------------------------------------------------------------------------------
def star(d, f, ink, w):
    points = []
    for i in range(10):
        r = 1.0 if i % 2 == 0 else 0.42
        a = -math.pi / 2 + i * math.pi / 5
        points.append((r * math.cos(a), r * math.sin(a) + 0.05))
    _poly(d, points, f, ink, w)


def heart(d, f, ink, w):
    _poly(d, [(-0.95, -0.2), (0.0, 0.95), (0.95, -0.2), (0.0, -0.3)], f, ink, w)
    _ellipse(d, -0.48, -0.35, 0.5, 0.45, f, None, 0)
    _ellipse(d, 0.48, -0.35, 0.5, 0.45, f, None, 0)
    d.arc([_p(-0.98, -0.8), _p(0.02, 0.1)], 150, 360, fill=ink, width=w)
    d.arc([_p(-0.02, -0.8), _p(0.98, 0.1)], 180, 30, fill=ink, width=w)


def arrow(d, f, ink, w):
    _poly(
        d,
        [(-1.0, -0.2), (0.2, -0.2), (0.2, -0.6), (1.0, 0.0), (0.2, 0.6), (0.2, 0.2), (-1.0, 0.2)],
        f, ink, w,
    )  # fmt: skip


def diamond(d, f, ink, w):
    _poly(d, [(0.0, -1.0), (0.75, 0.0), (0.0, 1.0), (-0.75, 0.0)], f, ink, w)
    _line(d, [(-0.75, 0.0), (0.75, 0.0)], ink, 1)


SHAPES: dict[str, Shape] = {name: globals()[name] for name in ICONS_WORLD.objects}


# -- styles, tiles, scenes ---------------------------------------------------------------------------------------
def _hsv(h: float, s: float, v: float) -> tuple[int, int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, s, v)
    return (int(r * 255), int(g * 255), int(b * 255), 255)


def _icon_layer(scene: Scene, rng: random.Random) -> Image.Image:
    """The icon alone on a transparent layer, coloured for its style."""
    layer = Image.new("RGBA", (CANVAS, CANVAS), (0, 0, 0, 0))
    d = ImageDraw.Draw(layer)
    hue = rng.random()
    if scene.style == "neon":  # bright outline only, with a glow under it
        ink = _hsv(hue, 1.0, 1.0)
        SHAPES[scene.obj](d, None, ink, 2)
        glow = layer.filter(ImageFilter.GaussianBlur(2.5))
        return Image.alpha_composite(glow, layer)
    if scene.style == "pastel":
        fill, ink = _hsv(hue, rng.uniform(0.15, 0.3), 1.0), _hsv(hue, 0.3, 0.75)
    else:
        fill = _hsv(hue, rng.uniform(0.6, 1.0), rng.uniform(0.55, 0.95))
        ink = (fill[0] // 4, fill[1] // 4, fill[2] // 4, 255)
    SHAPES[scene.obj](d, fill, ink, 2)
    return layer


def _tile(scene: Scene, rng: random.Random) -> Image.Image:
    if scene.style == "neon":
        base = _hsv(rng.random(), 0.5, rng.uniform(0.02, 0.1))
    elif scene.style == "pastel":
        base = _hsv(rng.random(), rng.uniform(0.02, 0.1), 1.0)
    else:
        base = _hsv(rng.random(), rng.uniform(0.0, 0.25), rng.uniform(0.75, 1.0))
    tile = Image.new("RGB", (CANVAS, CANVAS), base[:3])
    if scene.style == "checkered":
        second = _hsv(rng.random(), rng.uniform(0.3, 0.6), rng.uniform(0.35, 0.6))
        d = ImageDraw.Draw(tile)
        offset = rng.randrange(CHECK)
        for row in range(-1, CANVAS // CHECK + 1):
            for col in range(-1, CANVAS // CHECK + 1):
                if (row + col) % 2:
                    x, y = col * CHECK + offset, row * CHECK + offset
                    d.rectangle([x, y, x + CHECK - 1, y + CHECK - 1], fill=second[:3])
    return tile


def _underwater(image: Image.Image, rng: random.Random) -> Image.Image:
    """A blue-green tint over everything, darker with depth, and a few rising bubbles."""
    water = Image.new("RGB", (CANVAS, CANVAS), (10, rng.randrange(70, 120), rng.randrange(120, 170)))
    depth = Image.linear_gradient("L").resize((CANVAS, CANVAS)).point(lambda v: 110 + v // 3)
    image = Image.composite(water, image, depth)
    d = ImageDraw.Draw(image)
    for _ in range(rng.randrange(4, 8)):
        x, y, r = rng.randrange(CANVAS), rng.randrange(CANVAS), rng.uniform(1.5, 3.5)
        d.ellipse([x - r, y - r, x + r, y + r], outline=(220, 245, 255), width=1)
    return image


def render(scene: Scene, seed: int, size: int = 24) -> Image.Image:
    """One image of `scene`; the same (scene, seed) always gives the same pixels."""
    rng = random.Random(f"icons|{scene.obj}|{scene.style}|{scene.implicit}|{seed}")
    layer = _icon_layer(scene, rng)
    side = int(CANVAS * rng.uniform(0.7, 1.0))
    layer = layer.rotate(rng.uniform(-15, 15), resample=Image.Resampling.BILINEAR).resize(
        (side, side), Image.Resampling.BILINEAR
    )
    image = _tile(scene, rng)
    slack = CANVAS - side
    image.paste(layer, (rng.randint(0, slack), rng.randint(0, slack)), layer)
    if scene.implicit:
        image = _underwater(image, rng)
    return image.resize((size, size), Image.Resampling.LANCZOS) if size != CANVAS else image
