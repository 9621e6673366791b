"""Train a miniature world: classifier, autoencoder and UNet, then check the model generates its concepts.

    python -m benchmarks.miniworld.train [--world objects|icons] [--device cuda] [--out FOLDER]

Deterministic for a seed on one machine. The objects world's weights (the demo model) took 72 minutes on this
project's 2-core CPU (`--device cpu`, the model card has the breakdown); an earlier version of that world took 7
minutes on an H100 with `--device cuda`. Writes the model as a diffusers-style folder (fp16 safetensors; by default
the world's own folder), the evaluation classifier, the measured figures (`metrics.json`) and the model card.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from erasure_core.preview import decode_images

from .card import write_model_card
from .data import RenderedSet, caption_cache
from .nets import SCHEDULER_CONFIG, Classifier, to_tensor
from .world import WORLDS, World, get_world

logger = logging.getLogger("miniworld.train")
CACHE = Path(__file__).resolve().parent / ".cache"


@dataclass
class TrainSettings:
    seed: int = 0
    train_images: int = 60_000
    test_images: int = 5_000
    classifier_epochs: int = 3
    vae_steps: int = 2_500
    unet_steps: int = 2_000
    unet_batch: int = 256
    unet_lr: float = 5e-4
    ema_decay: float = 0.999
    caption_dropout: float = 0.1
    eval_images_per_object: int = 8
    eval_guidance: float = 5.0
    eval_steps: int = 25


def _batches(n: int, size: int, generator: torch.Generator, steps: int):
    """`steps` random batches of indices (reshuffled each epoch)."""
    done = 0
    while True:
        order = torch.randperm(n, generator=generator)
        for start in range(0, n - size + 1, size):
            if done == steps:
                return
            yield order[start : start + size]
            done += 1


def _cosine(step: int, total: int, warmup: int = 100) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def make_classifier(world: World) -> Classifier:
    return Classifier(len(world.objects), len(world.style_labels))


def train_classifier(train: RenderedSet, s: TrainSettings, device: str) -> Classifier:
    model = make_classifier(train.world).to(device)
    images, (objects, styles, implicit) = to_tensor(train.images), train.labels()
    steps = s.classifier_epochs * (len(train.scenes) // 256)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: _cosine(i, steps))
    for i, idx in enumerate(_batches(len(train.scenes), 256, torch.Generator().manual_seed(s.seed), steps)):
        o, st, n = model(images[idx].to(device))
        loss = (
            F.cross_entropy(o, objects[idx].to(device))
            + F.cross_entropy(st, styles[idx].to(device))
            + F.binary_cross_entropy_with_logits(n, implicit[idx].to(device))
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if i % 200 == 0:
            logger.info("classifier step %d/%d loss %.4f", i, steps, loss.item())
    return model.eval()


@torch.no_grad()
def classifier_accuracy(model: Classifier, images: np.ndarray, test: RenderedSet, device: str) -> dict[str, float]:
    objects, styles, implicit = test.labels()
    preds = [model(to_tensor(images[i : i + 512]).to(device)) for i in range(0, len(images), 512)]
    o, st, n = (torch.cat([p[k] for p in preds]).cpu() for k in range(3))
    hits = st.argmax(1) == styles
    return {
        "object_top1": float((o.argmax(1) == objects).float().mean()),
        "style_top1": float(hits.float().mean()),
        **{
            f"style_top1_{name}": float(hits[styles == i].float().mean())
            for i, name in enumerate(test.world.style_labels)
        },
        "implicit_accuracy": float(((n > 0).float() == implicit).float().mean()),
    }


def train_vae(train: RenderedSet, s: TrainSettings, device: str):
    from diffusers import AutoencoderKL

    vae = AutoencoderKL(**train.world.vae_config).to(device)
    images = to_tensor(train.images)
    opt = torch.optim.AdamW(vae.parameters(), lr=1e-3, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: _cosine(i, s.vae_steps))
    for i, idx in enumerate(_batches(len(train.scenes), 128, torch.Generator().manual_seed(s.seed + 1), s.vae_steps)):
        x = images[idx].to(device)
        posterior = vae.encode(x).latent_dist
        recon = vae.decode(posterior.sample()).sample
        loss = F.mse_loss(recon, x) + 1e-6 * posterior.kl().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if i % 250 == 0:
            logger.info("vae step %d/%d loss %.5f", i, s.vae_steps, loss.item())
    return vae.eval()


@torch.no_grad()
def encode_latents(vae, images: np.ndarray, device: str) -> torch.Tensor:
    return torch.cat(
        [
            vae.encode(to_tensor(images[i : i + 512]).to(device)).latent_dist.mean.cpu()
            for i in range(0, len(images), 512)
        ]
    )


def train_unet(
    world: World,
    latents: torch.Tensor,
    caption_ids: np.ndarray,
    embeddings: torch.Tensor,
    s: TrainSettings,
    device: str,
    init: dict[str, torch.Tensor] | None = None,
    warmup: int = 200,
):
    """Train (or, from `init`'s weights, fine-tune) the world's UNet on cached latents and caption encodings; returns
    the EMA copy."""
    from diffusers import DDPMScheduler, UNet2DConditionModel

    unet = UNet2DConditionModel(**world.unet_config).to(device)
    if init is not None:
        unet.load_state_dict({k: v.float() for k, v in init.items()})
    ema = UNet2DConditionModel(**world.unet_config).to(device)
    ema.load_state_dict(unet.state_dict())
    ema.requires_grad_(False)
    alphas = DDPMScheduler(
        **{k: v for k, v in SCHEDULER_CONFIG.items() if k not in ("set_alpha_to_one", "steps_offset")}
    ).alphas_cumprod.to(device)
    embeddings = embeddings.to(device)
    caption_ids = torch.as_tensor(caption_ids)
    opt = torch.optim.AdamW(unet.parameters(), lr=s.unet_lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: _cosine(i, s.unet_steps, warmup=warmup))
    generator = torch.Generator().manual_seed(s.seed + 2)
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if device.startswith("cuda")
        else torch.autocast("cpu", enabled=False)
    )
    for i, idx in enumerate(_batches(len(latents), s.unet_batch, generator, s.unet_steps)):
        x0 = latents[idx].to(device)
        noise = torch.randn(x0.shape, generator=generator).to(device)
        t = torch.randint(0, 1000, (len(idx),), generator=generator).to(device)
        ids = caption_ids[idx].clone()
        ids[torch.rand(len(idx), generator=generator) < s.caption_dropout] = 0  # the empty caption
        a = alphas[t].view(-1, 1, 1, 1)
        x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
        with autocast:
            pred = unet(x_t, t, encoder_hidden_states=embeddings[ids.to(device)]).sample
        loss = F.mse_loss(pred.float(), noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        sched.step()
        with torch.no_grad():
            decay = min(s.ema_decay, (1 + i) / (10 + i))
            for p_ema, p in zip(ema.parameters(), unet.parameters(), strict=True):
                p_ema.lerp_(p, 1 - decay)
        if i % 100 == 0:
            logger.info("unet step %d/%d loss %.4f", i, s.unet_steps, loss.item())
    return ema.eval()


def save_demo(out: Path, unet, vae, classifier: Classifier) -> None:
    """fp16 diffusers-style folders plus the classifier, written next to each other."""
    from diffusers import DDIMScheduler

    out.mkdir(parents=True, exist_ok=True)
    unet.to("cpu", torch.float16).save_pretrained(out / "unet", safe_serialization=True)
    vae.to("cpu", torch.float16).save_pretrained(out / "vae", safe_serialization=True)
    DDIMScheduler(**SCHEDULER_CONFIG).save_pretrained(out / "scheduler")
    tensors = {
        k: v.detach().to("cpu", torch.float16 if v.is_floating_point() else v.dtype).contiguous()
        for k, v in classifier.state_dict().items()
    }
    save_file(tensors, str(out / "classifier.safetensors"))


def evaluate_generations(
    world: World, out: Path, classifier: Classifier, s: TrainSettings, device: str
) -> dict[str, float]:
    """How well the saved model draws what it is asked: objects (the papers' SD baseline analogue) and each style."""
    from erasure_core.demo import load_demo
    from erasure_core.preview import generate_images

    demo = load_demo(device, out)
    n = s.eval_images_per_object
    objects, style_names = world.objects, world.styles
    prompts = [world.object_prompt(o) for o in objects for _ in range(n)]
    prompts += [world.style_prompt(o, st) for st in style_names for o in objects for _ in range(n // 4)]
    images = generate_images(
        demo.backend, demo.vae, prompts, list(range(len(prompts))), steps=s.eval_steps, guidance=s.eval_guidance
    )
    with torch.no_grad():
        concept_logits, styles, _ = (t.cpu() for t in classifier.float().to(device)(to_tensor(images).to(device)))
    labels = torch.tensor([objects.index(o) for o in objects for _ in range(n)])
    plain = concept_logits[: len(labels)]
    drawn = styles[len(labels) :].argmax(1).view(len(style_names), -1)
    return {
        "generation_object_top1": float((plain.argmax(1) == labels).float().mean()),
        "generation_object_top5": float((plain.topk(5, 1).indices == labels[:, None]).any(1).float().mean()),
        **{
            f"generation_style_top1_{st}": float((drawn[i] == world.style_labels.index(st)).float().mean())
            for i, st in enumerate(style_names)
        },
    }


def default_captions_path(world: World) -> Path:
    """Where a world's caption encodings are cached (the objects world's file predates the second world)."""
    return CACHE / ("captions.safetensors" if world.name == "objects" else f"captions-{world.name}.safetensors")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", default="objects", choices=tuple(WORLDS))
    parser.add_argument("--out", type=Path, help="model folder (default: the world's own)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--captions", type=Path, help="caption encoding cache (default: one per world)")
    for name, value in asdict(TrainSettings()).items():
        parser.add_argument("--" + name.replace("_", "-"), type=type(value), default=value)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    s = TrainSettings(**{k: getattr(args, k) for k in asdict(TrainSettings())})
    world = get_world(args.world)
    out = args.out or world.model_dir
    captions_path = args.captions or default_captions_path(world)
    torch.manual_seed(s.seed)
    timings: dict[str, float] = {}
    start = time.perf_counter()

    captions, embeddings = caption_cache(captions_path, s.seed, world)
    train = RenderedSet.make(s.train_images, s.seed, world)
    test = RenderedSet.make(s.test_images, s.seed + 10_000, world)
    timings["data_s"] = time.perf_counter() - start

    t = time.perf_counter()
    classifier = train_classifier(train, s, args.device)
    metrics = {
        f"classifier_{k}": v for k, v in classifier_accuracy(classifier, test.images, test, args.device).items()
    }
    timings["classifier_s"] = time.perf_counter() - t
    logger.info("classifier %s", metrics)

    t = time.perf_counter()
    vae = train_vae(train, s, args.device)
    train_latents = encode_latents(vae, train.images, args.device)
    vae.register_to_config(scaling_factor=float(1.0 / train_latents.std()))
    test_latents = encode_latents(vae, test.images, args.device)
    recon = decode_images(vae, test_latents * vae.config.scaling_factor)
    mse = float(np.mean((recon.astype(np.float64) - test.images.astype(np.float64)) ** 2))
    metrics["vae_psnr_db"] = 10 * math.log10(255.0**2 / mse)
    on_recon = classifier_accuracy(classifier, recon, test, args.device)
    metrics.update(
        {f"classifier_{k}_on_reconstructions": v for k, v in on_recon.items() if k.startswith(("object", "style"))}
    )
    timings["vae_s"] = time.perf_counter() - t
    logger.info("vae psnr %.2f dB", metrics["vae_psnr_db"])

    t = time.perf_counter()
    caption_ids = captions.pick(train.scenes, s.seed + 3)
    unet = train_unet(world, train_latents * vae.config.scaling_factor, caption_ids, embeddings, s, args.device)
    timings["unet_s"] = time.perf_counter() - t

    save_demo(out, unet, vae, classifier)
    t = time.perf_counter()
    metrics.update(evaluate_generations(world, out, classifier, s, args.device))
    timings["eval_s"] = time.perf_counter() - t
    timings["total_s"] = time.perf_counter() - start
    record = {
        "world": world.name,
        "command": "python -m benchmarks.miniworld.train " + " ".join(argv if argv is not None else sys.argv[1:]),
        "settings": asdict(s),
        "metrics": metrics,
        "timings": timings,
        "device": _device_name(args.device),
        "captions": len(captions.captions),
    }
    (out / "metrics.json").write_text(json.dumps(record, indent=2))
    write_model_card(world, out)
    logger.info("done: %s", json.dumps(record))
    return 0


def _device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(device)
    import os

    return f"CPU ({os.cpu_count()} cores)"


if __name__ == "__main__":
    raise SystemExit(main())
