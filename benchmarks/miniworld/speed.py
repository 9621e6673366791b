"""Speed of the miniature world on this machine: sampling, and the cost per training step of each method.

    python -m benchmarks.miniworld.speed [--device cpu] [--json PATH]

Sampling: 64 images in 25 DDIM steps with guidance (the issue's target: at most 10 s on 2 CPU cores).
Training: seconds and UNet evaluations per step of each method's default recipe on the demo model.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch

from erasure_core import erase, make_config
from erasure_core.defaults import MINIWORLD_RECIPE
from erasure_core.demo import load_demo
from erasure_core.preview import decode_images, generate_latents

from .world import OBJECTS_WORLD


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=10, help="training steps timed per method")
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    demo = load_demo(args.device)
    generate_latents(demo.backend, [OBJECTS_WORLD.object_prompt("apple")] * 4, range(4), steps=2)  # warm-up
    start = time.perf_counter()
    latents = generate_latents(demo.backend, [OBJECTS_WORLD.object_prompt("apple")] * 64, range(64), steps=25)
    decode_images(demo.vae, latents)
    report: dict = {"device": args.device, "threads": torch.get_num_threads(), "cpus": os.cpu_count()}
    report["sample_64_images_25_steps_s"] = time.perf_counter() - start
    for method in ("esd", "eap", "age"):
        config = make_config(method, erase=["apple"], **{**MINIWORLD_RECIPE, "steps": args.steps, "audit_samples": 0})
        result = erase(demo.backend, config)
        report[method] = {"seconds_total": result.seconds, "unet_evals_per_step": result.unet_evals / args.steps}
    print(json.dumps(report, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
