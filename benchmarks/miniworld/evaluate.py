"""The erasure benchmark of the miniature worlds: the papers' protocols in miniature.

    python -m benchmarks.miniworld.evaluate [--world objects|icons] --task objects --methods none,esd,eap,age,uce \
        --steps 200 --json out.json

Tasks: `transfer` (erase on the base, apply to community-like descendants: `transfer.py`), `objects` (Imagenette analogue: 4 splits of 5 erased + 5 kept, ESR/PSR-1/5, FID-style distance of kept
concepts), `neighbours` (erase one concept at a time; same-group vs other-group preservation and the impact matrix),
`styles` (erase one style, keep the others), `implicit` (erase the implicit concept, "night" or "underwater", with
`noxattn`; detector rate over prompts that mostly never name it), or `all`. Every method runs with the same step budget and seeds. Writes JSON, a
markdown table and a before/after image grid per task. Percentages are 0..100.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file

from erasure_core import EraseResult, LoraFile, erase, make_config
from erasure_core.config import setting_names
from erasure_core.defaults import MINIWORLD_RECIPE
from erasure_core.demo import DemoModel, load_demo
from erasure_core.distance_cache import CACHE_ENV
from erasure_core.loading import machine_name
from erasure_core.lora.adapter import LoraWeights
from erasure_core.preview import generate_images, image_grid

from .nets import Classifier, to_tensor
from .world import OBJECTS_WORLD, WORLDS, Scene, World, get_world

logger = logging.getLogger("miniworld.evaluate")
METHODS = ("none", "esd", "eap", "age", "uce")
TASKS = ("objects", "neighbours", "styles", "implicit")
SPLITS = 4  # every world has four 5/5 object splits (World.object_splits)


@dataclass
class Bench:
    """Settings shared by every task, and the loaded model and classifier."""

    world: World = OBJECTS_WORLD
    methods: tuple[str, ...] = METHODS
    steps: int = MINIWORLD_RECIPE["steps"]
    images_per_concept: int = 16
    seed: int = 0
    device: str = "cpu"
    sample_steps: int = 25
    guidance: float = 5.0
    overrides: dict[str, Any] = field(default_factory=dict)  # extra engine settings for every trained method

    def __post_init__(self) -> None:
        self.demo: DemoModel = load_demo(self.device, self.world.model_dir)
        self.classifier = load_classifier(self.world, self.device)

    def seeds(self, n: int) -> list[int]:
        return [self.seed * 100_000 + i for i in range(n)]

    def train(
        self, method: str, erase_: Sequence[str], keep: Sequence[str], layers: str | None = None
    ) -> tuple[LoraWeights | None, dict]:
        """The LoRA of `method` (None for the unedited model), with its seconds, peak memory and UNet evaluations."""
        if method == "none":
            return None, {"seconds": 0.0, "peak_mem_mb": 0.0, "unet_evals": 0, "steps_trained": 0, "not_erased": []}
        result = self.run(method, erase_, keep, layers)
        return result.weights, run_cost(result)

    def run(
        self,
        method: str,
        erase_: Sequence[str],
        keep: Sequence[str],
        layers: str | None = None,
        resume: LoraFile | None = None,
    ) -> EraseResult:
        """One erasure by `method` with the bench's recipe; `resume` continues from a LoRA file as the hosts do."""
        settings: dict[str, Any] = {
            **MINIWORLD_RECIPE,
            "steps": self.steps,
            "seed": self.seed,
            "audit_samples": 0,
            **self.overrides,
        }
        if method == "uce":  # closed form: none of the training recipe applies, the overrides may
            settings = {"seed": self.seed, "audit_samples": 0, **self.overrides}
        elif layers:
            settings["layers"] = layers
        known = setting_names(method)  # `--set` may name one method's settings in a run of several
        config = make_config(
            method, erase=tuple(erase_), keep=tuple(keep), **{k: settings[k] for k in settings if k in known}
        )
        result = erase(self.demo.backend, config, resume=resume)
        logger.info("%s erased %s in %.1f s", method, list(erase_), result.seconds)
        return result

    def images(self, prompts: Sequence[str], lora: LoraWeights | None) -> np.ndarray:
        seeds = [
            s for _ in range(len(prompts) // self.images_per_concept) for s in self.seeds(self.images_per_concept)
        ]
        return generate_images(
            self.demo.backend, self.demo.vae, prompts, seeds, lora, self.sample_steps, self.guidance
        )

    @torch.no_grad()
    def classify(self, images: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Object logits, style logits, night logits and features of uint8 images."""
        x = to_tensor(images).to(self.device)
        features = self.classifier.features(x)
        return (
            self.classifier.objects(features).cpu(),
            self.classifier.styles(features).cpu(),
            self.classifier.night(features).squeeze(-1).cpu(),
            features.cpu(),
        )


def run_cost(result: EraseResult) -> dict[str, Any]:
    """What a run cost, as the reports keep it."""
    return {
        "seconds": result.seconds,
        "peak_mem_mb": result.peak_memory_mb,
        "unet_evals": result.unet_evals,
        "steps_trained": result.steps_trained,
        "not_erased": sorted(result.not_erased),  # concepts the trainer measured short of erased_at
    }


def load_classifier(world: World, device: str = "cpu", folder: Path | None = None) -> Classifier:
    model = Classifier(len(world.objects), len(world.style_labels))
    path = (folder or world.model_dir) / "classifier.safetensors"
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in load_file(str(path)).items()})
    return model.to(device).eval()


def top_k_hit(logits: torch.Tensor, label: int, k: int) -> torch.Tensor:
    return (logits.topk(k, dim=1).indices == label).any(dim=1).float()


def feature_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Frechet distance between Gaussian fits of two feature sets (FID, on the classifier's features).

    tr(sqrt(A B)) is computed as the trace of sqrt(sqrt(A) B sqrt(A)), a symmetric matrix, so no scipy is needed.
    """
    a, b = a.double(), b.double()
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)
    values, vectors = torch.linalg.eigh(cov_a)
    root_a = vectors @ torch.diag(values.clamp_min(0).sqrt()) @ vectors.T
    cross = torch.linalg.eigvalsh(root_a @ cov_b @ root_a).clamp_min(0).sqrt().sum()
    return float(((a.mean(0) - b.mean(0)) ** 2).sum() + torch.trace(cov_a) + torch.trace(cov_b) - 2 * cross)


def _spread(values: list[float]) -> float:
    return statistics.pstdev(values) if len(values) > 1 else 0.0


def _object_images(bench: Bench, concepts: Sequence[str], lora: LoraWeights | None):
    prompts = [bench.world.object_prompt(c) for c in concepts for _ in range(bench.images_per_concept)]
    images = bench.images(prompts, lora)
    logits, _, _, features = bench.classify(images)
    per_concept = {
        c: (logits[i * bench.images_per_concept : (i + 1) * bench.images_per_concept]) for i, c in enumerate(concepts)
    }
    return images, per_concept, features


def _rate(
    bench: Bench, per_concept: dict[str, torch.Tensor], concepts: Sequence[str], k: int, hit: bool = True
) -> float:
    values = [top_k_hit(per_concept[c], bench.world.objects.index(c), k) for c in concepts]
    rate = float(torch.cat(values).mean()) if values else float("nan")
    return 100 * (rate if hit else 1 - rate)


def reference_features(bench: Bench, concepts: Sequence[str], per_concept: int, seed: int = 7) -> torch.Tensor:
    """Classifier features of renders of exactly these concepts as their prompts ask for them (plain, daytime)."""
    scenes = [Scene(c) for c in concepts for _ in range(per_concept)]
    return bench.classify(bench.world.render_batch(scenes, [seed * 1_000_003 + i for i in range(len(scenes))]))[3]


def task_objects(bench: Bench, splits: Sequence[tuple[tuple[str, ...], tuple[str, ...]]]) -> dict[str, Any]:
    """ESR/PSR on erased/kept splits, plus same-group and other-group preservation of the concepts in no split.

    FID-feat compares the kept concepts' generations with renders of the same kept concepts.
    """
    # no kept list (the many-concepts task): nothing to compare the kept generations with
    references = {kept: reference_features(bench, kept, 4 * bench.images_per_concept) for _, kept in splits if kept}
    methods: dict[str, Any] = {}
    grids = []
    for method in bench.methods:
        per_split: dict[str, list[float]] = {}
        costs = []
        erased_each: dict[str, float] = {}  # ESR-1 of every erased concept on its own, never only the mean
        kept_each: dict[str, float] = {}  # PSR-1 of every other concept on its own: which one pays
        for erased, kept in splits:
            lora, cost = bench.train(method, erased, kept)
            costs.append(cost)
            group_of = bench.world.group_of
            others = [o for o in bench.world.objects if o not in erased + kept]
            images, per_concept, features = _object_images(bench, list(erased + kept) + others, lora)
            near = [o for o in others if group_of[o] in {group_of[e] for e in erased}]
            far = [o for o in others if o not in near]
            kept_features = features[
                len(erased) * bench.images_per_concept : (len(erased) + len(kept)) * bench.images_per_concept
            ]
            row = {
                "ESR-1": _rate(bench, per_concept, erased, 1, hit=False),
                "ESR-5": _rate(bench, per_concept, erased, 5, hit=False),
                "PSR-1": _rate(bench, per_concept, kept, 1),
                "PSR-5": _rate(bench, per_concept, kept, 5),
                "neighbour-PSR-1": _rate(bench, per_concept, near, 1),
                **(
                    {"far-PSR-1": _rate(bench, per_concept, far, 1)} if far else {}
                ),  # none when the split spans all groups
            }
            if kept:
                row["FID-feat"] = feature_distance(kept_features, references[kept])
            for key, value in row.items():
                per_split.setdefault(key, []).append(value)
            erased_each.update({c: _rate(bench, per_concept, [c], 1, hit=False) for c in erased})
            kept_each.update({c: _rate(bench, per_concept, [c], 1) for c in list(kept) + others})
            if (erased, kept) == tuple(splits[0]):
                grids.append((method, images[:: bench.images_per_concept][: len(erased) + len(kept)]))
        methods[method] = {**_summary(per_split, costs), "ESR-1 each": erased_each, "PSR-1 each": kept_each}
    concepts = list(splits[0][0] + splits[0][1])
    return {"methods": methods, "splits": [list(map(list, s)) for s in splits], "grid": (concepts, grids)}


def _summary(per_split: dict[str, list[float]], costs: list[dict]) -> dict[str, Any]:
    out: dict[str, Any] = {key: statistics.fmean(values) for key, values in per_split.items()}
    out["spread"] = {key: _spread(values) for key, values in per_split.items()}
    out["seconds"] = statistics.fmean(c["seconds"] for c in costs)
    out["peak_mem_mb"] = max(c["peak_mem_mb"] for c in costs)
    out["unet_evals"] = statistics.fmean(c["unet_evals"] for c in costs)
    out["steps_trained"] = statistics.fmean(c["steps_trained"] for c in costs)
    out["not_erased"] = sorted({name for c in costs for name in c["not_erased"]})
    return out


def nearest_concepts(world: World) -> dict[str, str]:
    """Each concept's nearest other concept by the text encoder (cosine of mean-pooled MiniLM states of the words):
    the neighbour an erasure is most likely to hurt, reported on its own rather than averaged into its group."""
    from erasure_core.backends.diffusers_backend import run_text_encoder, tokenize
    from erasure_core.demo import demo_text_encoder

    tokenizer, encoder = demo_text_encoder("cpu")
    objects = list(world.objects)
    tokens = tokenize(tokenizer, objects)
    with torch.no_grad():
        states = run_text_encoder(encoder, tokens)[0].float()
    mask = tokens["attention_mask"].unsqueeze(-1).float()
    pooled = torch.nn.functional.normalize((states * mask).sum(1) / mask.sum(1), dim=-1)
    similarity = pooled @ pooled.T
    similarity.fill_diagonal_(-2.0)
    return {o: objects[int(similarity[i].argmax())] for i, o in enumerate(objects)}


def _synonym_leak(bench: Bench, concept: str, lora: LoraWeights | None) -> float | None:
    """Share of images (percent) still showing `concept` when asked for by its one-word synonym, if it has one."""
    words = [w for w in bench.world.synonyms.get(concept, ()) if w != concept]
    if not words:
        return None
    images = bench.images([bench.world.object_prompt(words[0])] * bench.images_per_concept, lora)
    logits = bench.classify(images)[0]
    return 100 * float(top_k_hit(logits, bench.world.objects.index(concept), 1).mean())


def task_neighbours(bench: Bench, concepts: Sequence[str]) -> dict[str, Any]:
    """Erase each concept alone; the erased concept, its synonym, its nearest concept, the rest of its group and the
    other groups, each reported on its own; impact = generation-rate drop of every concept (the AGE paper's graph)."""
    world = bench.world
    objects = world.objects
    nearest = nearest_concepts(world)
    base_images, base, _ = _object_images(bench, objects, None)
    base_rate = {o: _rate(bench, base, [o], 1) for o in objects}
    base_leak = {c: leak for c in concepts if (leak := _synonym_leak(bench, c, None)) is not None}
    methods: dict[str, Any] = {}
    grids = []
    for method in [m for m in bench.methods if m != "none"]:
        per_split: dict[str, list[float]] = {}
        costs, matrix, own = [], {}, {}
        for concept in concepts:
            lora, cost = bench.train(method, [concept], [])
            costs.append(cost)
            images, per_concept, _ = _object_images(bench, objects, lora)
            rates = {o: _rate(bench, per_concept, [o], 1) for o in objects}
            matrix[concept] = {o: base_rate[o] - rates[o] for o in objects}
            near = [
                o
                for o in objects
                if world.group_of[o] == world.group_of[concept] and o not in (concept, nearest[concept])
            ]
            far = [o for o in objects if world.group_of[o] != world.group_of[concept] and o != nearest[concept]]
            row = {
                "ESR-1": 100 - rates[concept],
                "ESR-5": _rate(bench, per_concept, [concept], 5, hit=False),
                "nearest-PSR-1": rates[nearest[concept]],
                "neighbour-PSR-1": statistics.fmean(rates[o] for o in near),
                "far-PSR-1": statistics.fmean(rates[o] for o in far),
            }
            if concept in base_leak:
                row["synonym-leak"] = _synonym_leak(bench, concept, lora)
            own[concept] = row  # each concept's own figures, never only the mean
            for key, value in row.items():
                per_split.setdefault(key, []).append(value)
            if concept == concepts[0]:
                grids.append((method, images[:: bench.images_per_concept]))
        methods[method] = _summary(per_split, costs) | {"impact": matrix, "per_concept": own}
    none_rows = {
        "ESR-1": [100 - base_rate[c] for c in concepts],
        "nearest-PSR-1": [base_rate[nearest[c]] for c in concepts],
        "neighbour-PSR-1": [
            statistics.fmean(
                base_rate[o] for o in objects if world.group_of[o] == world.group_of[c] and o not in (c, nearest[c])
            )
            for c in concepts
        ],
        "far-PSR-1": [
            statistics.fmean(
                base_rate[o] for o in objects if world.group_of[o] != world.group_of[c] and o != nearest[c]
            )
            for c in concepts
        ],
    }
    if base_leak:
        none_rows["synonym-leak"] = list(base_leak.values())
    methods["none"] = {key: statistics.fmean(v) for key, v in none_rows.items()} | {"seconds": 0.0, "peak_mem_mb": 0.0}
    return {
        "methods": methods,
        "erased": list(concepts),
        "nearest": {c: nearest[c] for c in concepts},
        "grid": (list(objects), [("none", base_images[:: bench.images_per_concept])] + grids),
    }


def task_styles(bench: Bench, style: str) -> dict[str, Any]:
    """Erase one style, keep the others: style-classifier accuracy on erased-style and kept-style prompts."""
    world = bench.world
    kept_styles = [s for s in world.styles if s != style]
    objects = world.objects[::3]
    prompts = {
        s: [world.style_prompt(o, s) for o in objects for _ in range(bench.images_per_concept)] for s in world.styles
    }
    methods: dict[str, Any] = {}
    grids = []
    for method in bench.methods:
        lora, cost = bench.train(method, [f"{style} style"], [f"{s} style" for s in kept_styles])
        accuracy, shown = {}, []
        for s in world.styles:
            images = bench.images(prompts[s], lora)
            _, style_logits, _, _ = bench.classify(images)
            accuracy[s] = 100 * float((style_logits.argmax(1) == world.style_labels.index(s)).float().mean())
            shown.append(images[0])
        grids.append((method, np.stack(shown)))
        methods[method] = {
            "ESR-1": 100 - accuracy[style],
            "PSR-1": statistics.fmean(accuracy[s] for s in kept_styles),
            "style_accuracy": accuracy,
            **cost,
        }
    return {"methods": methods, "erased": style, "grid": (list(world.styles), grids)}


def task_implicit(bench: Bench) -> dict[str, Any]:
    """Erase the implicit concept from the non-cross-attention layers (ESD-u); detector rate over the implicit
    prompts ("night_rate": the detector's head is named after the first world's concept)."""
    world = bench.world
    prompts = world.implicit_prompts()
    plain = [world.object_prompt(o) for o in world.objects[::2]]
    n = bench.images_per_concept
    methods: dict[str, Any] = {}
    grids = []
    for method in bench.methods:
        lora, cost = bench.train(method, [world.implicit], [], layers="noxattn")
        images = bench.images([p for p in prompts for _ in range(n)], lora)
        _, _, night, _ = bench.classify(images)
        detected = 100 * float((night > 0).float().mean())
        plain_images = bench.images([p for p in plain for _ in range(n)], lora)
        objects, _, _, _ = bench.classify(plain_images)
        labels = torch.tensor([world.objects.index(o) for o in world.objects[::2] for _ in range(n)])
        methods[method] = {
            "night_rate": detected,
            "ESR-1": 100 - detected,
            "PSR-1": 100 * float((objects.argmax(1) == labels).float().mean()),
            **cost,
        }
        grids.append((method, images[:: n * 4][:8]))
    return {"methods": methods, "prompts": len(prompts), "grid": ([p[:18] for p in prompts[::4]][:8], grids)}


# -- outputs --------------------------------------------------------------------------------------------------
COLUMNS = (
    "ESR-1",
    "ESR-5",
    "synonym-leak",
    "PSR-1",
    "PSR-5",
    "nearest-PSR-1",
    "neighbour-PSR-1",
    "far-PSR-1",
    "FID-feat",
    "night_rate",
    "seconds",
    "peak_mem_mb",
)


def markdown(task: str, result: dict[str, Any], world: World = OBJECTS_WORLD) -> str:
    """The task's table, followed by the impact matrices when the result has them (the neighbours sweep)."""
    rows = result["methods"]
    columns = [c for c in COLUMNS if any(c in r for r in rows.values())]
    lines = [f"### {task}", "", "| method | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for method, row in rows.items():
        cells = []
        for c in columns:
            value = row.get(c)
            spread = row.get("spread", {}).get(c)
            cells.append("-" if value is None else f"{value:.1f}" + (f" ± {spread:.1f}" if spread else ""))
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    impact = impact_markdown(result, world)
    return "\n".join(lines) + "\n" + ("\n" + impact if impact else "")


def impact_markdown(result: dict[str, Any], world: World = OBJECTS_WORLD) -> str:
    """The neighbours sweep's impact matrix by group: the mean drop (points of top-1 rate) of each group's concepts
    when one concept is erased, averaged over the erased concepts of a group; the erased concept itself is left out."""
    lines = []
    for method, row in result["methods"].items():
        if "impact" not in row:
            continue
        groups, group_of = world.groups, world.group_of
        erased_groups = [g for g in groups if any(group_of[c] == g for c in row["impact"])]
        lines += [
            f"Impact of erasing one concept ({method}): rows are the erased concept's group, columns the group whose "
            "generation rate dropped (points).",
            "",
            "| erased from | " + " | ".join(groups) + " |",
            "|---" * (len(groups) + 1) + "|",
        ]
        for erased_group in erased_groups:
            drops = {g: [] for g in groups}
            for concept, impact in row["impact"].items():
                if group_of[concept] == erased_group:
                    for other, drop in impact.items():
                        if other != concept:
                            drops[group_of[other]].append(drop)
            cells = [f"{statistics.fmean(drops[g]):.1f}" for g in groups]
            lines.append(f"| {erased_group} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def save_grid(result: dict[str, Any], path: Path) -> None:
    columns, rows = result["grid"]
    image_grid([list(images) for _, images in rows], [m for m, _ in rows], columns, scale=2).save(path)


def run(args: argparse.Namespace) -> dict[str, Any]:
    from . import attack_task, transfer  # import this module
    from .attack_task import task_attack
    from .descend import DescendSettings

    world = get_world(args.world)
    bench = Bench(
        world,
        tuple(args.methods.split(",")),
        args.steps,
        args.images_per_concept,
        args.seed,
        args.device,
        overrides=merged_settings(args.set),
    )
    erase_list = [c.strip() for c in args.erase.split(",") if c.strip()] if args.erase else []
    keep_list = [c.strip() for c in args.keep.split(",") if c.strip()] if args.keep else []
    tasks = TASKS if args.task == "all" else (args.task,)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    for task in tasks:
        start = time.perf_counter()
        if task == "objects":
            splits = (
                [(tuple(erase_list), tuple(keep_list))]
                if erase_list
                else world.object_splits[: 1 if args.quick else args.splits]
            )
            result = task_objects(bench, splits)
        elif task == "neighbours":
            result = task_neighbours(bench, erase_list or (world.objects[:1] if args.quick else world.objects))
        elif task == "styles":
            result = task_styles(bench, erase_list[0] if erase_list else world.styles[0])
        elif task == "transfer":
            erased, kept = (tuple(erase_list), tuple(keep_list)) if erase_list else world.object_splits[0]
            kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
            made = DescendSettings(**{"seed": args.descendant_seed, **merged_settings(args.descend)})
            result = transfer.task_transfer(bench, erased, kept, kinds, made)
        elif task == "attack":
            result = task_attack(bench, erase_list or list(world.objects[:1]), args.attack_budget)
        else:
            result = task_implicit(bench)
        if result.get("grid") is not None:
            save_grid(result, out_dir / f"{task}.png")
        result.pop("grid")
        result["wall_s"] = time.perf_counter() - start
        results[task] = result
        if task in ("transfer", "attack"):
            table = (transfer if task == "transfer" else attack_task).markdown(result)
        else:
            table = markdown(task, result, world)
        (out_dir / f"{task}.md").write_text(table)
        logger.info("%s done in %.0f s\n%s", task, result["wall_s"], table)
    report = {
        "methods": results[tasks[0]]["methods"],
        "tasks": results,
        "world": world.name,
        "settings": {k: v for k, v in asdict(bench).items() if k not in ("overrides", "world")}
        | {"overrides": bench.overrides},
        "machine": machine_name(args.device),
    }
    return report


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.miniworld.evaluate", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--world", default="objects", choices=tuple(WORLDS), help="which miniature world")
    parser.add_argument("--list-concepts", action="store_true", help="print the world's concepts as JSON and exit")
    parser.add_argument(
        "--erase", help="comma-separated concepts to erase (objects: one split; neighbours: the sweep)"
    )
    parser.add_argument("--keep", help="comma-separated concepts to keep (objects task)")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument(
        "--task",
        default="objects",
        choices=(*TASKS, "transfer", "attack", "all"),
        help="'all' is every task but transfer and attack",
    )
    parser.add_argument("--attack-budget", type=float, default=120.0, help="attack task: seconds per attack audit")
    parser.add_argument(
        "--steps", type=int, default=MINIWORLD_RECIPE["steps"], help="training steps of every trained method"
    )
    parser.add_argument("--images-per-concept", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", help="write the report here")
    parser.add_argument("--out-dir", default="benchmarks/miniworld/results", help="markdown tables and image grids")
    parser.add_argument(
        "--kinds", default="style,merge,concepts,continued", help="transfer task: the descendants (descend.py)"
    )
    parser.add_argument(
        "--descendant-seed", type=int, default=0, help="transfer task: which descendants (each seed its own)"
    )
    parser.add_argument(
        "--descend", action="append", help="transfer task: descendant settings as JSON (descend.py's options)"
    )
    parser.add_argument("--quick", action="store_true", help="one split / one concept, for a fast check")
    parser.add_argument(
        "--splits",
        type=int,
        default=SPLITS,
        choices=range(1, SPLITS + 1),
        help="objects task: run the first N splits (1 and 2 together erase each of the ten concepts once)",
    )
    parser.add_argument(
        "--set",
        action="append",
        help="extra engine settings for every trained method, as JSON (e.g. '{\"lr\": 1e-3}'); "
        "repeatable, a later one wins",
    )
    return parser


def merged_settings(sets: list[str] | None) -> dict[str, Any]:
    """The `--set` JSON objects merged in order, so that a study script can pin settings under each run's own."""
    merged: dict[str, Any] = {}
    for text in sets or ():
        merged.update(json.loads(text))
    return merged


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.list_concepts:
        print(json.dumps(get_world(args.world).list_concepts()))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    os.environ[CACHE_ENV] = "off"  # every run pays the candidate search's set-up: comparable seconds
    unknown = set(args.methods.split(",")) - set(METHODS)
    if unknown:
        raise SystemExit(f"unknown method(s) {sorted(unknown)}; choose from {', '.join(METHODS)}")
    if unknown := set(merged_settings(args.set)) - {n for m in METHODS[1:] for n in setting_names(m)}:
        raise SystemExit(f"--set names setting(s) {sorted(unknown)} that no method has")
    report = run(args)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
