"""Training data of a miniature world: scenes, rendered images, captions and their cached text encodings."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from .world import Scene, World

STYLE_PROBABILITY = 0.4  # share of images drawn in one of the styles (the rest are plain)
IMPLICIT_PROBABILITY = 0.2
CAPTIONS_PER_SCENE_KIND = 12  # wordings cached per (concept, style, implicit); bounds the caption cache to ~3,000


def scene_kinds(world: World) -> list[Scene]:
    return [Scene(o, s, n) for o in world.objects for s in world.style_labels for n in (False, True)]


def sample_scenes(n: int, seed: int, world: World) -> list[Scene]:
    rng = random.Random(seed)
    scenes = []
    for _ in range(n):
        style = rng.choice(world.styles) if rng.random() < STYLE_PROBABILITY else "plain"
        scenes.append(Scene(rng.choice(world.objects), style, rng.random() < IMPLICIT_PROBABILITY))
    return scenes


@dataclass
class CaptionSet:
    """Every training caption, with the wordings available for each scene kind. Index 0 is the empty caption."""

    captions: list[str]
    by_kind: dict[Scene, list[int]]

    @classmethod
    def build(cls, seed: int, world: World) -> CaptionSet:
        rng = random.Random(seed)
        captions, by_kind = [""], {}
        for kind in scene_kinds(world):
            wordings = sorted({world.caption(kind, rng) for _ in range(4 * CAPTIONS_PER_SCENE_KIND)})
            rng.shuffle(wordings)
            by_kind[kind] = list(range(len(captions), len(captions) + CAPTIONS_PER_SCENE_KIND))
            captions.extend((wordings * CAPTIONS_PER_SCENE_KIND)[:CAPTIONS_PER_SCENE_KIND])
        return cls(captions, by_kind)

    def pick(self, scenes: list[Scene], seed: int) -> np.ndarray:
        rng = random.Random(seed)
        return np.array([rng.choice(self.by_kind[s]) for s in scenes], dtype=np.int64)


@torch.no_grad()
def encode_captions(captions: list[str], device: str = "cpu") -> torch.Tensor:
    """MiniLM token states `[N, 16, 384]`, exactly as the demo backend encodes prompts."""
    from erasure_core.backends.diffusers_backend import run_text_encoder, tokenize
    from erasure_core.demo import demo_text_encoder

    tokenizer, encoder = demo_text_encoder(device)
    chunks = [
        run_text_encoder(encoder, tokenize(tokenizer, captions[i : i + 256]))[0].float().cpu()
        for i in range(0, len(captions), 256)
    ]
    return torch.cat(chunks)


def caption_cache(path: Path, seed: int, world: World) -> tuple[CaptionSet, torch.Tensor]:
    """The caption set and its encodings, computed once and stored as fp16 safetensors at `path`."""
    captions = CaptionSet.build(seed, world)
    if path.is_file():
        stored = load_file(str(path))
        if stored["embeddings"].shape[0] == len(captions.captions):
            return captions, stored["embeddings"].float()
    embeddings = encode_captions(captions.captions)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"embeddings": embeddings.half().contiguous()}, str(path))
    return captions, embeddings


@dataclass
class RenderedSet:
    world: World
    scenes: list[Scene]
    images: np.ndarray  # uint8 [N, size, size, 3]

    @classmethod
    def make(cls, n: int, seed: int, world: World) -> RenderedSet:
        scenes = sample_scenes(n, seed, world)
        return cls(world, scenes, world.render_batch(scenes, [seed * 1_000_003 + i for i in range(n)]))

    def labels(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Concept index, style index and implicit (0/1) of every image."""
        objects = torch.tensor([self.world.objects.index(s.obj) for s in self.scenes])
        styles = torch.tensor([self.world.style_labels.index(s.style) for s in self.scenes])
        implicit = torch.tensor([float(s.implicit) for s in self.scenes])
        return objects, styles, implicit
