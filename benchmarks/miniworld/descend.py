"""Community-like descendants of a miniature world's model: the checkpoints people run instead of the base.

    python -m benchmarks.miniworld.descend [--world objects] [--seed 0] [--kinds style,merge,concepts,continued]

Made with the world's own training code, the way the community makes them (issue 24.1):

- **style**: a house-style fine-tune. Every image the captions leave unstyled is drawn in one of the world's styles
  (chosen by the seed), so the model draws that look by default, as an anime fine-tune of SD does; captions that
  name a style keep it.
- **merge**: the weighted sum of the base and the style fine-tune (the commonest community "model").
- **concepts**: a fine-tune that teaches three new concepts (kite, flag, crown) while replaying the old ones.
- **continued**: a long continued training of the base on fresh data of another seed.

Only the UNet changes (the text encoder is the fixed MiniLM, the autoencoder the base's). Each descendant is a
model folder like the base's, kept under `benchmarks/miniworld/.cache/descendants/` (not shipped: a descendant is
rebuilt from its seed in a few minutes), with `descendant.json` saying how it was made.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import logging
import random
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file

from .data import IMPLICIT_PROBABILITY, STYLE_PROBABILITY, caption_cache, sample_scenes
from .train import CACHE, TrainSettings, default_captions_path, encode_latents, train_unet
from .world import WORLDS, Scene, World, get_world

logger = logging.getLogger("miniworld.descend")
KINDS = ("style", "merge", "concepts", "continued")
NEW_GROUP = "new"


# -- the new concepts: polygons and lines only, so that both renderers draw them with their own helpers ---------------
def kite(m, d, f, ink, w):
    m._poly(d, [(0.0, -1.0), (0.6, -0.2), (0.0, 0.5), (-0.6, -0.2)], f, ink, w)
    m._line(d, [(0.0, 0.5), (-0.2, 0.75), (0.15, 0.85), (-0.1, 1.0)], ink, w)


def flag(m, d, f, ink, w):
    m._line(d, [(-0.7, -0.95), (-0.7, 1.0)], ink, w + 1)
    m._poly(d, [(-0.7, -0.95), (0.9, -0.6), (-0.7, -0.1)], f, ink, w)


def crown(m, d, f, ink, w):
    m._poly(
        d,
        [(-0.9, 0.6), (-0.9, -0.5), (-0.45, 0.0), (0.0, -0.8), (0.45, 0.0), (0.9, -0.5), (0.9, 0.6)],
        f,
        ink,
        w,
    )


NEW_SHAPES = {"kite": kite, "flag": flag, "crown": crown}


def with_new_concepts(world: World) -> World:
    """The world plus the new concepts (a group of their own), drawable by its renderer."""
    module = importlib.import_module(f"{__package__}.{world.renderer}")
    for name, shape in NEW_SHAPES.items():
        module.SHAPES.setdefault(name, lambda d, f, ink, w, _s=shape, _m=module: _s(_m, d, f, ink, w))
    return dataclasses.replace(world, groups={**world.groups, NEW_GROUP: tuple(NEW_SHAPES)})


@dataclass
class DescendSettings:
    seed: int = 0
    images: int = 12_000
    batch: int = 128
    lr: float = 2e-4
    ema_decay: float = 0.99
    style_steps: int = 300
    concept_steps: int = 300
    continued_steps: int = 600
    merge_weight: float = 0.5  # of the style fine-tune


def descendant_dir(world: World, kind: str, seed: int) -> Path:
    return CACHE / "descendants" / world.name / f"{kind}-seed{seed}"


def house_style(world: World, seed: int) -> str:
    return world.styles[seed % len(world.styles)]


def _scenes(kind: str, world: World, s: DescendSettings) -> tuple[list[Scene], list[Scene], World]:
    """What each training image shows, and the scene whose captions describe it (they differ for the house style)."""
    data_seed = 50_000 + 97 * s.seed + KINDS.index(kind)  # never a seed the base was trained or tested on
    if kind == "style":
        drawn = sample_scenes(s.images, data_seed, world)
        style = house_style(world, s.seed)
        shown = [dataclasses.replace(x, style=style) if x.style == "plain" else x for x in drawn]
        return shown, drawn, world
    if kind == "concepts":
        plus = with_new_concepts(world)
        rng = random.Random(data_seed)
        old = sample_scenes(s.images // 2, data_seed, world)
        new = [
            Scene(
                rng.choice(tuple(NEW_SHAPES)),
                rng.choice(world.styles) if rng.random() < STYLE_PROBABILITY else "plain",
                rng.random() < IMPLICIT_PROBABILITY,
            )
            for _ in range(s.images - len(old))
        ]
        scenes = old + new
        random.Random(data_seed + 1).shuffle(scenes)
        return scenes, scenes, plus
    scenes = sample_scenes(s.images, data_seed, world)
    return scenes, scenes, world


def _load_unet_state(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "unet" / "diffusion_pytorch_model.safetensors"))


def _save(out: Path, base: Path, unet_state: dict[str, torch.Tensor], world: World, record: dict) -> None:
    """A model folder like the base's (its autoencoder and scheduler), written beside and renamed into place."""
    from diffusers import UNet2DConditionModel

    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    unet = UNet2DConditionModel(**world.unet_config)
    unet.load_state_dict({k: v.float() for k, v in unet_state.items()})
    unet.to(torch.float16).save_pretrained(tmp / "unet", safe_serialization=True)
    for part in ("vae", "scheduler"):
        shutil.copytree(base / part, tmp / part)
    (tmp / "descendant.json").write_text(json.dumps(record, indent=2))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)


def fine_tune(world: World, kind: str, s: DescendSettings, device: str) -> dict[str, torch.Tensor]:
    """The base UNet trained on `kind`'s data with the world's own training loop."""
    from diffusers import AutoencoderKL

    shown, described, caption_world = _scenes(kind, world, s)
    path = default_captions_path(world)
    if caption_world is not world:
        path = path.with_name(path.stem + "-new.safetensors")
    captions, embeddings = caption_cache(path, 0, caption_world)  # the base's wordings (seed 0) for its concepts
    images = caption_world.render_batch(shown, [s.seed * 7_919 + i for i in range(len(shown))])
    vae = AutoencoderKL.from_pretrained(world.model_dir / "vae", torch_dtype=torch.float32).to(device).eval()
    latents = encode_latents(vae, images, device) * vae.config.scaling_factor
    ids = captions.pick(described, 60_000 + s.seed)
    steps = {"style": s.style_steps, "concepts": s.concept_steps, "continued": s.continued_steps}[kind]
    settings = TrainSettings(
        seed=60_000 + s.seed, unet_steps=steps, unet_batch=s.batch, unet_lr=s.lr, ema_decay=s.ema_decay
    )
    unet = train_unet(
        world, latents, ids, embeddings, settings, device, init=_load_unet_state(world.model_dir), warmup=steps // 10
    )
    return {k: v.detach().cpu() for k, v in unet.state_dict().items()}


def make_descendant(world: World, kind: str, s: DescendSettings, device: str = "cpu", force: bool = False) -> Path:
    """The descendant's folder, made first if it is missing, was made with other settings, or `force`."""
    out = descendant_dir(world, kind, s.seed)
    record_path = out / "descendant.json"
    if record_path.is_file() and not force:
        if json.loads(record_path.read_text()).get("settings") == asdict(s):
            return out
        logger.info("%s was made with other settings; making it again", out)
    start = time.perf_counter()
    if kind == "merge":
        style = make_descendant(world, "style", s, device, force)
        base, tuned = _load_unet_state(world.model_dir), _load_unet_state(style)
        w = s.merge_weight
        state = {k: ((1 - w) * base[k].float() + w * tuned[k].float()) for k in base}
    else:
        state = fine_tune(world, kind, s, device)
    record = {
        "world": world.name,
        "kind": kind,
        "settings": asdict(s),
        "house_style": house_style(world, s.seed) if kind in ("style", "merge") else None,
        "new_concepts": list(NEW_SHAPES) if kind == "concepts" else [],
        "seconds": round(time.perf_counter() - start, 1),
        "command": "python -m benchmarks.miniworld.descend " + " ".join(sys.argv[1:]),
    }
    _save(out, world.model_dir, state, world, record)
    logger.info("%s descendant (seed %d) in %.0f s: %s", kind, s.seed, record["seconds"], out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.miniworld.descend", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--world", default="objects", choices=tuple(WORLDS))
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--force", action="store_true", help="rebuild descendants that exist")
    for name, value in asdict(DescendSettings()).items():
        parser.add_argument("--" + name.replace("_", "-"), type=type(value), default=value)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    if unknown := set(kinds) - set(KINDS):
        parser.error(f"unknown kind(s) {sorted(unknown)}; choose from {', '.join(KINDS)}")
    s = DescendSettings(**{k: getattr(args, k) for k in asdict(DescendSettings())})
    world = get_world(args.world)
    for kind in kinds:
        print(make_descendant(world, kind, s, args.device, args.force))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
