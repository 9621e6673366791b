"""Speed and memory of each method's default recipe next to the reference implementations' loop, in one run.

    python -m benchmarks.speed --models small,miniworld                   # the CPU comparison
    python -m benchmarks.speed --models sd15,sdxl --device cuda           # full-size SD1.5 / SDXL on a GPU
    python -m benchmarks.speed --tiny                                     # a check that it works (< 2 min, CPU)

Models have random weights (`speed_models.py`); speed does not depend on their values. For every model and method:
- the default recipe (the engine's defaults; the demo model's own recipe for `miniworld`) runs through
  `erasure_core.erase` for a latent-pool period (steps / pool_refreshes steps, 'auto' resolved, one pool
  refresh included), timed after the set-up (prompt encoding, EAP/AGE's candidate search, LoRA injection): the
  first period of a fresh LoRA and, with more than one, a later period resumed from the LoRA the first trained
  (the first is cheaper, see `default_recipe`); its projected time to erase one concept is set-up + the first
  period + (pool_refreshes - 1) x the later one;
  the set-up is also shown on its own, and a second speed-up leaves it out, because the reference loop's time has
  none (its code encodes the candidate words once and caches them on disk);
- the faithful reference loop (`reference_loop.py`) runs a few iterations after one warm-up; its projected time is
  seconds per iteration x the reference recipe's iterations (ESD 1000, EAP/AGE 2000).
UNet evaluations are counted by the engine (one per sample per forward, one per sample a backward passes through).
On CUDA the default recipe runs in bf16 with fp32 LoRA weights, as a host that loaded the model in half precision
would, and the reference in fp32 as its code does. Peak memory is the process's resident memory on a CPU and the
allocator's peak on a GPU, measured for each run separately.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from erasure_core import erase, export_lora, load_lora, make_config
from erasure_core.callbacks import INFO_PHASE, INFO_UNET_EVALS, Callbacks
from erasure_core.cancel import current_phase
from erasure_core.config import EraseConfig, setting_names
from erasure_core.distance_cache import CACHE_ENV
from erasure_core.loading import machine_name
from erasure_core.lora.export import LoraFile
from erasure_core.trainer import EraseResult

from .reference_loop import REFERENCE_ITERATIONS, ReferenceLoop, cuda_sync
from .speed_models import MODELS, RECIPES

CONCEPT = "cat"
TRAINED = ("esd", "eap", "age")
# --tiny: the test suite's model, short runs; enough to check that every path works.
TINY = {"steps": 8, "ddim_steps": 10, "k_closest": 20, "num_centers": 6, "pool_candidates": 4}


class PeakMemory:
    """Peak memory of a block: CUDA allocator peak, or the process's resident set sampled every 5 ms."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.peak_mb = 0.0

    @contextmanager
    def measure(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            yield self
            torch.cuda.synchronize(self.device)
            self.peak_mb = torch.cuda.max_memory_allocated(self.device) / 2**20
            return
        done = threading.Event()
        peak = [_rss_mb()]

        def poll() -> None:
            while not done.wait(0.005):
                peak[0] = max(peak[0], _rss_mb())

        thread = threading.Thread(target=poll, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            done.set()
            thread.join()
            self.peak_mb = max(peak[0], _rss_mb())


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class _Clock(Callbacks):
    """Times the set-up (until the first step is about to run) and the training steps of one `erase` call."""

    def __init__(self, device: torch.device) -> None:
        super().__init__(on_step=self._on_step, should_stop=self._should_stop)
        self.device = device
        self.start = self.train_start = self.first_step_end = self.end = 0.0
        self.first_step_evals = self.evals = 0

    def _should_stop(self) -> bool:  # polled in every phase; the first poll of training starts its clock
        if not self.train_start and current_phase() == "train":
            cuda_sync(self.device)
            self.train_start = time.perf_counter()
        return False

    def _on_step(self, step: int, total: int, info: dict[str, Any]) -> None:
        if info.get(INFO_PHASE) == "train" and step in (1, total):
            cuda_sync(self.device)
            now = time.perf_counter()
            if step == 1:
                self.first_step_end, self.first_step_evals = now, info[INFO_UNET_EVALS]
            self.end, self.evals = now, info[INFO_UNET_EVALS]


def default_recipe(backend, method: str, overrides: dict[str, Any], period_steps: int | None) -> dict[str, Any]:
    """Time pool periods of `method`'s default recipe (or their first `period_steps` steps) and project the run.

    The first period of a fresh LoRA is sampled before its first update, while the edit is zero, so its stored
    latents come with the original model's predictions at no cost; every later period makes them on first visits.
    With more than one period the run is therefore timed twice: the first period, and a later one resumed from the
    LoRA the first has trained; the projection is set-up + first + (periods - 1) x later.
    The first step of a period samples the pool, so a shortened period projects as first step + (period - 1) x the
    mean of the others. That is exact where the others cost the same, as they do with fresh latents; with the pool,
    later steps cost less than early ones (the original model's predictions at a pooled latent are kept after its
    first visit), so a shortened pooled period overstates the cost and only a whole one is exact.
    """
    known = setting_names(method)
    full: EraseConfig = make_config(method, erase=[CONCEPT], **{k: v for k, v in overrides.items() if k in known})
    memory = PeakMemory(backend.device)
    if method == "uce":
        with memory.measure():
            result = erase(backend, full.replace(audit_samples=0))
        return {"recipe": "default", "steps": 1, "projected_s": result.seconds, "peak_mb": memory.peak_mb}
    full = full.resolved()  # the whole run's choices: a period's fewer steps would resolve 'auto' otherwise
    refreshes = full.resolved_pool_refreshes()
    periods = max(1, refreshes)
    period = math.ceil(full.steps / periods)
    timed = min(period, max(2, period_steps or period))
    config = full.replace(steps=timed, pool_refreshes=min(1, refreshes), audit_samples=0)
    with memory.measure():
        first, result = _time_period(backend, config, period)
        later = first
        if periods > 1:
            with tempfile.TemporaryDirectory() as scratch:  # resume takes a LoRA as written, with its metadata
                resume = load_lora(export_lora(result, Path(scratch) / "first.safetensors", torch.float32))
            later, _ = _time_period(backend, config, period, resume)
    return {
        "recipe": "default",
        "steps": full.steps,
        "timed_steps": timed,
        "setup_s": first["setup_s"],
        "s_per_step": (first["s"] + (periods - 1) * later["s"]) / (periods * period),
        "projected_s": first["setup_s"] + first["s"] + (periods - 1) * later["s"],
        "unet_evals_per_concept": first["evals"] + (periods - 1) * later["evals"],
        "peak_mb": memory.peak_mb,
    }


def _time_period(
    backend, config: EraseConfig, period: int, resume: LoraFile | None = None
) -> tuple[dict[str, float], EraseResult]:
    """One `erase` of `config.steps` steps of a pool period: its set-up, and the period's projected seconds and
    UNet evaluations (see `default_recipe`)."""
    clock = _Clock(backend.device)
    clock.start = time.perf_counter()
    result = erase(backend, config, callbacks=clock, resume=resume)
    timed = config.steps
    first = clock.first_step_end - clock.train_start
    rest = (clock.end - clock.first_step_end) / (timed - 1)
    evals_rest = (clock.evals - clock.first_step_evals) / (timed - 1)
    return {
        "setup_s": clock.train_start - clock.start,
        "s": first + (period - 1) * rest,
        "evals": clock.first_step_evals + (period - 1) * evals_rest,
    }, result


def reference(backend, method: str, iterations: int) -> dict[str, Any]:
    memory = PeakMemory(backend.device)
    with memory.measure():
        words = backend.vocabulary()[:100]  # the candidate set (EN3K words in the reference; set-up not timed)
        loop = ReferenceLoop(backend, method, CONCEPT, words)
        try:
            loop.run(1)  # warm-up
            timing = loop.run(iterations)
        finally:
            loop.close()
    total = REFERENCE_ITERATIONS[method]
    return {
        "recipe": "reference",
        "steps": total,
        "timed_steps": timing.iterations,
        "s_per_step": timing.seconds_per_iteration,
        "projected_s": timing.seconds_per_iteration * total,
        "unet_evals_per_concept": timing.unet_evals_per_iteration * total,
        "peak_mb": memory.peak_mb,
    }


def period_steps(text: str) -> dict[str, int]:
    """`--period-steps`: 'N' (every method) or 'method=N,...' (only those)."""
    if "=" not in text:
        return dict.fromkeys(TRAINED, int(text))
    steps = {}
    for part in text.split(","):
        method, _, value = part.partition("=")
        if method.strip() not in TRAINED:
            raise argparse.ArgumentTypeError(f"unknown method {method.strip()!r}; choose from {', '.join(TRAINED)}")
        steps[method.strip()] = int(value)
    return steps


def bench_model(
    name: str,
    device: str,
    methods: list[str],
    iterations: int,
    overrides: dict,
    period_steps: dict[str, int] | None,
    save: Callable[[], None],
) -> dict[str, Any]:
    """Every method on one model; `save` is called after each method so that a cut-off run keeps its rows."""
    backend = MODELS[name](device)
    overrides = {**RECIPES.get(name, {}), **overrides}
    fp32 = backend.dtype
    low = torch.bfloat16 if backend.device.type == "cuda" else fp32
    rows: dict[str, Any] = {}
    result = {"default_dtype": str(low).replace("torch.", ""), "methods": rows}
    for dtype in {fp32, low}:  # first-call costs (CUDA context, kernel selection) are not part of any recipe
        _set_dtype(backend, dtype)
        erase(backend, make_config("esd", erase=[CONCEPT], steps=2, ddim_steps=4, pool_refreshes=1, audit_samples=0))
    for method in methods:
        _set_dtype(backend, low)
        row = {"default": default_recipe(backend, method, overrides, (period_steps or {}).get(method))}
        if method in TRAINED and iterations > 0:
            _set_dtype(backend, fp32)
            row["reference"] = reference(backend, method, iterations)
            row["speedup"], row["train_speedup"] = speedups(row["reference"], row["default"])
            row["evals_ratio"] = row["reference"]["unet_evals_per_concept"] / row["default"]["unet_evals_per_concept"]
        rows[method] = row
        print(_lines(name, method, row), flush=True)
        save()
    return result


def _set_dtype(backend, dtype: torch.dtype) -> None:
    if backend.dtype != dtype:
        for module in (backend.unet, *backend.encoders()):
            module.to(dtype)


def speedups(reference: dict[str, Any], default: dict[str, Any]) -> tuple[float, float]:
    """Reference over default projected time: end to end, and without the default's set-up (prompt encoding,
    candidate search). The reference encodes its candidate words once and caches them on disk (algorithms.md
    §2.1), so its loop's time has no set-up; the second ratio compares the two training loops alone."""
    total = reference["projected_s"]
    return total / default["projected_s"], total / (default["projected_s"] - default.get("setup_s", 0.0))


def _lines(model: str, method: str, row: dict[str, Any]) -> str:
    out = []
    for recipe in ("default", "reference"):
        if (r := row.get(recipe)) is None:
            continue
        evals = r.get("unet_evals_per_concept")
        speedup = training = setup = ""
        reference = row.get("reference") or row.get("borrowed")
        if recipe == "default" and reference is not None:  # recomputed, so reports made before show both ratios
            mark = "*" if "borrowed" in row else ""  # against another report's reference row
            speedup, training = (f"{ratio:.1f}x{mark}" for ratio in speedups(reference, r))
        if "setup_s" in r:
            setup = f"{r['setup_s']:.1f}"
        per_step = f"{r['s_per_step']:.4f}" if "s_per_step" in r else ""
        out.append(
            f"| {model} | {method} | {recipe} | {r['steps']} | {per_step} | {setup} | {r['projected_s']:.1f} | "
            f"{'' if evals is None else f'{evals:,.0f}'} | {r['peak_mb']:,.0f} | {speedup} | {training} |"
        )
    return "\n".join(out)


HEADER = (
    "| model | method | recipe | steps | s/step | set-up s | projected s per concept | UNet evals per concept "
    "| peak MB | speed-up | speed-up without set-up |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|"
)


def show(report: dict[str, Any], references: dict[tuple[str, str, str], dict] | None = None) -> str:
    """A saved report as the table `main` prints while it runs.

    `references` ((machine, model, method) -> reference row, from `reference_rows`) gives rows measured without a
    reference loop (`--iterations 0`) their speed-ups against one from another report of the same machine and model.
    """
    settings = f", settings {json.dumps(report['overrides'])}" if report.get("overrides") else ""
    lines = [f"{report['machine']}{settings}", "", HEADER]
    for model, entry in report["models"].items():
        for method, row in entry.get("methods", {}).items():
            reference = (references or {}).get((report["machine"], model, method))
            if "reference" not in row and reference is not None:
                row = {**row, "borrowed": reference}
            lines.append(_lines(model, method, row))
    return "\n".join(lines)


def reference_rows(reports: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict]:
    """Every reference row of the reports, by (machine, model, method)."""
    return {
        (report["machine"], model, method): row["reference"]
        for report in reports
        for model, entry in report["models"].items()
        for method, row in entry.get("methods", {}).items()
        if "reference" in row
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.speed", description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="small,miniworld", help=f"comma-separated: {', '.join(MODELS)}")
    parser.add_argument("--methods", default="esd,eap,age,uce")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--iterations", type=int, default=3, help="timed reference iterations per method (0: no reference)"
    )
    parser.add_argument(
        "--period-steps",
        type=period_steps,
        help="time only the first N steps of the default recipe's pool period: N for every method, or per method "
        "as esd=N,age=M (methods not named run whole periods)",
    )
    parser.add_argument("--tiny", action="store_true", help="the tiny test model and short runs (CI check)")
    parser.add_argument("--set", help="extra engine settings for the default recipe, as JSON")
    parser.add_argument("--json", help="write the report here")
    parser.add_argument("--show", nargs="+", metavar="JSON", help="print the tables of saved reports and exit")
    args = parser.parse_args(argv)
    os.environ[CACHE_ENV] = "off"  # every run pays the candidate search's set-up: comparable seconds
    if args.show:
        reports = [json.loads(Path(path).read_text()) for path in args.show]
        references = reference_rows(reports)
        for report in reports:
            print(show(report, references) + "\n")
        return 0
    overrides = json.loads(args.set or "{}")
    models = args.models.split(",")
    if args.tiny:
        models, args.iterations, overrides = ["tiny"], 1, {**TINY, **overrides}
    if unknown := sorted(set(models) - set(MODELS)):
        raise SystemExit(f"unknown model(s) {unknown}; choose from {', '.join(MODELS)}")
    methods = args.methods.split(",")
    print(f"Machine: {machine_name(args.device, threads=True)}\n\n{HEADER}", flush=True)
    report: dict[str, Any] = {"machine": machine_name(args.device, threads=True), "overrides": overrides, "models": {}}

    def save() -> None:
        if args.json:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps(report, indent=2))

    for name in models:
        report["models"][name] = {}
        report["models"][name] = bench_model(
            name, args.device, methods, args.iterations, overrides, args.period_steps, save
        )
    save()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
