"""Erase Concept inside ComfyUI against the engine on diffusers: training seconds per step, same architecture.

    COMFYUI_ROOT=/path/to/ComfyUI python -m benchmarks.comfyui_speed [--steps 20] [--resolution 64] [--json PATH]

Both sides train the same method, settings and UNet architecture (the tiny SD1.5 of the ComfyUI tests: one level
of 320 channels, one transformer block, 768-wide 77-token context; random weights, since speed does not depend on
their values). The ComfyUI side loads a real checkpoint through ComfyUI and runs exactly what the node runs
(ComfyUI's model management, its ldm UNet and `apply_model`); the engine side uses `DiffusersBackend` on a
diffusers UNet of the same shape. The issue's target: ComfyUI within 15% of the engine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]


def _step_timer() -> tuple[Any, list[float]]:
    """Callbacks that time training steps; the engine only reads `on_step`/`should_stop`, so either copy takes them."""
    from erasure_core.callbacks import INFO_PHASE, Callbacks

    times: list[float] = []

    def on_step(step: int, total: int, info: dict) -> None:
        if info.get(INFO_PHASE) == "train":
            times.append(time.perf_counter())

    return Callbacks(on_step=on_step), times


def _per_step(times: list[float], warmup: int = 2) -> float:
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)][warmup:]
    return statistics.median(gaps)


def engine_seconds_per_step(settings: dict[str, Any], work: Path) -> float:
    from diffusers import DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from erasure_core import erase, make_config
    from erasure_core.backends.diffusers_backend import DiffusersBackend
    from erasure_core.testing import write_clip_tokenizer

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(320,),
        down_block_types=("CrossAttnDownBlock2D",), up_block_types=("CrossAttnUpBlock2D",),
        cross_attention_dim=768, attention_head_dim=8,
    )  # fmt: skip
    tokenizer = write_clip_tokenizer(work / "tokenizer")
    tokenizer.model_max_length = 77
    text = CLIPTextModel(
        CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                       num_attention_heads=12, max_position_embeddings=77, bos_token_id=0, eos_token_id=1, pad_token_id=2)
    )  # fmt: skip
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False)
    backend = DiffusersBackend(unet.eval(), text.eval(), tokenizer, scheduler, name="tiny-sd15-diffusers")
    callbacks, times = _step_timer()
    erase(backend, make_config(**settings), callbacks)
    return _per_step(times)


def comfy_seconds_per_step(settings: dict[str, Any], comfy_root: Path, work: Path) -> float:
    from tests.comfyui.tiny_checkpoint import build_sd15_checkpoint  # before ComfyUI's own `tests` is on the path
    from tests.pack import load_pack

    sys.argv = [sys.argv[0], "--cpu"] if not torch.cuda.is_available() else [sys.argv[0]]
    sys.path.insert(0, str(comfy_root))  # first, so that `nodes` is ComfyUI's module, not this repo's package
    import comfy.options

    comfy.options.enable_args_parsing()
    import comfy.sd

    load_pack()
    from concept_erasure_pack.erasure_core import erase, make_config
    from concept_erasure_pack.nodes.comfy_backend import ComfyBackend

    path = work / "tiny_sd15.safetensors"
    build_sd15_checkpoint(str(path))
    with torch.inference_mode():  # as ComfyUI's executor runs every node
        model, clip = comfy.sd.load_checkpoint_guess_config(str(path), output_vae=False, output_clip=True)[:2]
        backend = ComfyBackend(model.clone(), clip)
        callbacks, times = _step_timer()
        with torch.inference_mode(False), torch.enable_grad():
            backend.load()
            erase(backend, make_config(**settings), callbacks)
    return _per_step(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--comfyui-root", default=os.environ.get("COMFYUI_ROOT"))
    parser.add_argument("--method", default="esd", choices=["esd", "eap", "age"])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    if not args.comfyui_root:
        parser.error("set COMFYUI_ROOT (a ComfyUI checkout) or pass --comfyui-root")
    settings = {
        "method": args.method, "erase": ["cat"], "steps": args.steps, "resolution": args.resolution,
        "ddim_steps": 10, "audit_samples": 0, "seed": 0,
    }  # fmt: skip
    if args.method != "esd":
        settings.update(vocabulary=["dog", "car", "house", "tree", "bird", "flower"], k_closest=6, num_centers=4)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        engine = engine_seconds_per_step(settings, Path(tmp))
        comfy = comfy_seconds_per_step(settings, Path(args.comfyui_root), Path(tmp))
    report = {
        "machine": f"{os.cpu_count()} CPUs, torch {torch.__version__}, threads {torch.get_num_threads()}",
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "settings": settings,
        "engine_s_per_step": round(engine, 4),
        "comfyui_s_per_step": round(comfy, 4),
        "comfyui_over_engine": round(comfy / engine, 3),
        "target": "comfyui_over_engine <= 1.15",
    }
    print(json.dumps(report, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    raise SystemExit(main())
