"""One erasure job as the tab and the HTTP route run it: check the request, train on the loaded model, write the
LoRA where the WebUI finds it, and draw the before/after grid with the WebUI's own txt2img.

Host-free: the WebUI is reached through a `Host` (`host.WebUIHost` in the WebUI, a fake in tests). Compute, check,
commit: every input is checked before the model is touched, the LoRA and its card are written atomically only
after training finished, and the loaded model is handed back unchanged whatever happens (`borrowed_model`).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from erasure_core import (
    ATTACKS,
    AttackConfig,
    Callbacks,
    ConfigError,
    EraseConfig,
    EraseResult,
    ErasureError,
    erase,
    export_lora,
    load_lora,
    lora_weights_for,
    run_attack,
    run_audit,
)
from erasure_core.frontend import (
    CONFIG_CLASSES,
    DEFAULTS,
    atomic_write,
    image_grid,
    is_closed_form,
    load_state,
    preview_rows,
    row_label,
)
from erasure_core.frontend.concepts import PRESETS, merge_presets
from erasure_core.frontend.lora_files import SUFFIX, resolve_target, safe_relative_name
from erasure_core.frontend.settings import (
    LAYER_CHOICES,
    MAX_STEPS,
    METHODS,
    TRAINING_WIDGETS,
    attack_config,
    attack_text,
    build_config,
)
from erasure_core.frontend.verdict import check_settings, made_on_scores, transfer_verdict

from .backend import borrowed_model

SD_VERSION = {"sd1": "SD1", "sd2": "SD2", "sdxl": "SDXL"}  # the Lora card's "sd version" (A1111 network.SdVersion)


class Busy(ErasureError):
    """Another erasure is running (or waiting for the GPU) in this WebUI."""


class Host(Protocol):
    """What a job needs from the running WebUI (`host.WebUIHost`)."""

    def sd_model(self) -> Any: ...
    def lora_folder(self) -> Path: ...
    def refresh_loras(self) -> None: ...
    def active_networks(self) -> list | None: ...
    def load_model_gpu(self) -> Callable[[Any], Any] | None: ...
    def clip_skip(self) -> int: ...
    def callbacks(self) -> Callbacks: ...
    def txt2img(self, prompts: Sequence[str], seed: int, size: int, steps: int, cfg: float) -> list[Any]: ...
    def release_memory(self) -> None: ...


# -- the request ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Field:
    kind: type | tuple[type, ...]
    default: Any
    help: str
    bounds: tuple[float, float] | None = None  # for numbers: the smallest and largest value allowed


FIELDS: dict[str, Field] = {
    "erase": Field((list, str), None, "concepts to erase: a list, or one per line; 'concept: 1.5' sets a weight"),
    "keep": Field((list, str), [], "concepts to keep, the same way"),
    "preset": Field(str, "custom", f"a preset list to start from: {', '.join(PRESETS)}"),
    "method": Field(str, "eap", f"one of {', '.join(METHODS)}"),
    "layers": Field(str, "method default", f"one of {', '.join(LAYER_CHOICES)}"),
    "steps": Field(int, None, f"training steps, 1 to {MAX_STEPS} (default: the method's)"),
    "lr": Field((int, float), None, "LoRA learning rate (default: the method's)"),
    "rank": Field(int, None, "LoRA rank (default: the method's)"),
    "seed": Field(int, None, "random seed (default: the method's)"),
    "name": Field(str, "", "LoRA file name in the Lora folder (default: erased-<first concept>)"),
    "overwrite": Field(bool, False, "replace an existing LoRA of that name"),
    "robust": Field(bool, False, "ESD, EAP: train against the recovery attack too (slower; the whole step budget)"),
    "settings": Field((dict, str), {}, "any other engine setting: an object, or 'name = value' lines"),
    "resume": Field(
        str, "", "a LoRA of the Lora folder to continue training from (same method, concepts, layers and rank)"
    ),
    "preview": Field(bool, False, "draw the before/after grid with txt2img"),
    "preview_size": Field(int, None, "grid image size in pixels, 64 to 2048 (default: the model's)", (64, 2048)),
    "preview_steps": Field(int, 20, "txt2img steps of the grid, 1 to 150", (1, 150)),
    "preview_cfg": Field((int, float), 7.0, "txt2img CFG scale of the grid, 1 to 30", (1, 30)),
}


@dataclass(frozen=True)
class ErasureRequest:
    config: EraseConfig
    name: str  # relative to the Lora folder, ".safetensors" included; "" = derive from the first concept
    overwrite: bool = False
    preview: bool = False
    preview_size: int | None = None
    preview_steps: int = 20
    preview_cfg: float = 7.0
    resume: str = ""  # a LoRA of the Lora folder to continue from, as <lora:NAME:1> names it; "" = a fresh LoRA


def parse_request(data: Mapping[str, Any]) -> ErasureRequest:
    """Check a request (the tab's fields, or the route's JSON) and build its config; `ConfigError` says what to fix."""
    if not isinstance(data, Mapping):
        raise ConfigError('The request must be a JSON object such as {"erase": ["cat"], "name": "no-cat"}.')
    if unknown := sorted(set(data) - set(FIELDS)):
        raise ConfigError(
            f"Unknown field(s) {unknown}; the fields are {', '.join(FIELDS)} (engine settings go in 'settings')."
        )
    values = {key: data.get(key, spec.default) for key, spec in FIELDS.items()}
    for key, value in values.items():
        spec = FIELDS[key]
        if value is None:
            continue
        kinds = spec.kind if isinstance(spec.kind, tuple) else (spec.kind,)
        wrong_kind = not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds)
        if wrong_kind or (spec.bounds is not None and not spec.bounds[0] <= value <= spec.bounds[1]):
            raise ConfigError(f"'{key}' is {value!r}; it should be {spec.help}.")
    if values["erase"] is None:
        raise ConfigError('\'erase\' is missing: name at least one concept to erase, e.g. {"erase": ["cat"]}.')
    method = values["method"]
    if method not in METHODS:
        raise ConfigError(f"'method' is {method!r}; choose one of {', '.join(METHODS)}.")
    if values["layers"] not in LAYER_CHOICES:
        raise ConfigError(f"'layers' is {values['layers']!r}; choose one of {', '.join(LAYER_CHOICES)}.")
    concepts = merge_presets(values["preset"], _lines(values["erase"], "erase"), _lines(values["keep"], "keep"))
    defaults = DEFAULTS[method]
    config = build_config(
        concepts,
        "",
        "",
        method,
        values["layers"],
        values["steps"] if values["steps"] is not None else defaults["steps"],
        values["lr"] if values["lr"] is not None else defaults["lr"],
        values["rank"] if values["rank"] is not None else defaults["rank"],
        values["seed"] if values["seed"] is not None else defaults["seed"],
        values["settings"],
        values["robust"],
    )
    name = values["name"].strip()
    return ErasureRequest(
        config,
        safe_relative_name(name).as_posix() if name else "",
        values["overwrite"],
        values["preview"],
        values["preview_size"],
        values["preview_steps"],
        float(values["preview_cfg"]),
        values["resume"].strip(),
    )


def parse_form(values: dict[str, Any]) -> ErasureRequest:
    """The tab's widget values → a checked request: gradio numbers arrive as floats, an empty number box as 0 or
    None, and a chosen preset's lines were already copied into the text boxes (where the user could edit them)."""
    data = dict(values)
    for key in ("steps", "rank", "seed", "preview_size"):
        if isinstance(data.get(key), float) and data[key].is_integer():
            data[key] = int(data[key])
    if not data.get("preview_size"):
        data["preview_size"] = None
    data["preset"] = "custom"
    if data.get("method") in CONFIG_CLASSES and is_closed_form(data["method"]):  # its (disabled) widgets do not apply
        for key in TRAINING_WIDGETS:
            data.pop(key, None)
    return parse_request(data)


def _lines(value: list | str, what: str) -> str:
    if isinstance(value, str):
        return value
    if not all(isinstance(v, str) for v in value):
        raise ConfigError(f"'{what}' must list concepts as strings; got {value!r}.")
    return "\n".join(value)


def method_info() -> dict[str, Any]:
    """What `GET /concept-erasure/v1/methods` answers: the methods with their defaults, and the request fields."""
    return {
        "default": METHODS[0],
        "methods": {m: {k: v for k, v in DEFAULTS[m].items() if _plain(v)} for m in METHODS},
        "layers": list(LAYER_CHOICES),
        "presets": {name: {"erase": e.splitlines(), "keep": k.splitlines()} for name, (e, k) in PRESETS.items()},
        "fields": {key: {"default": spec.default, "help": spec.help} for key, spec in FIELDS.items()},
    }


def _plain(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool)) or value is None


# -- one run at a time ----------------------------------------------------------------------------------------
_RUN = threading.Lock()


@contextlib.contextmanager
def exclusive_run() -> Iterator[None]:
    """Refuse at once, rather than queue behind it, an erasure started while another runs or waits for the GPU."""
    if not _RUN.acquire(blocking=False):
        raise Busy(
            "Another concept erasure is running in this WebUI; wait until it finishes, or press Interrupt to stop it."
        )
    try:
        yield
    finally:
        _RUN.release()


# -- the job --------------------------------------------------------------------------------------------------
@dataclass
class JobResult:
    name: str  # the LoRA's name, what <lora:NAME:1> takes
    path: Path
    result: EraseResult
    timings: dict[str, float] = field(default_factory=dict)
    grid: Any = None  # a PIL image: rows of prompts, before and after
    grid_rows: list[tuple[str, str]] = field(default_factory=list)  # (role, prompt) per row
    preview_error: str | None = None

    @property
    def prompt_tag(self) -> str:
        return f"<lora:{self.name}:1>"

    def to_dict(self) -> dict[str, Any]:
        r = self.result
        return {
            "name": self.name,
            "path": str(self.path),
            "prompt": self.prompt_tag,
            "method": r.config.method,
            "erased": list(r.config.erase),
            "kept": list(r.config.keep),
            "found": r.found,
            "targets": {k: [[w, p] for w, p in v] for k, v in r.targets.items()},
            "audit": r.audit.to_dict() if r.audit else None,
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
            "unet_evals": r.unet_evals,
            "steps_trained": r.steps_trained,
            "resumed_from": r.resumed_from,  # the LoRA this run continued from, and what of it
            "previous_steps": r.previous_steps,
            "resumed_optimizer": r.resumed_optimizer,
            "not_erased": r.not_erased,  # concepts below `erased_at` when the budget ran out
            "stopped": r.stop_reason(),
            "erasure_checks": r.checks,
            "losses": [round(v, 6) for v in r.losses],
            "settings": r.config.resolved().to_dict(),
            "preview_rows": [{"role": role, "prompt": p} for role, p in self.grid_rows],
            "preview_error": self.preview_error,
        }


def run_job(request: ErasureRequest, host: Host) -> JobResult:
    """Train, save and (optionally) preview one erasure on the WebUI's loaded model."""
    start = time.perf_counter()
    folder = host.lora_folder()
    target = lora_target(folder, request.name or default_name(request.config), request.overwrite, request.name == "")
    start_from = _lora_in_folder(folder, request.resume) if request.resume else None
    resume = load_lora(start_from) if start_from else None
    resume_state = load_state(start_from) if start_from else None
    try:
        with borrowed_model(host.sd_model(), host.active_networks(), host.load_model_gpu(), host.clip_skip()) as b:
            result = erase(b, request.config, host.callbacks(), resume=resume, resume_state=resume_state)
        trained = time.perf_counter()
        save(result, target)
        host.refresh_loras()
    finally:
        host.release_memory()
    job = JobResult(target.stem, target, result)
    job.timings = {"training_s": result.seconds, "save_s": time.perf_counter() - trained}
    if request.preview:
        preview_start = time.perf_counter()
        try:
            job.grid, job.grid_rows = before_after_grid(host, job, request)
        except ErasureError as exc:  # the LoRA is saved and fine; say why the pictures are missing
            job.preview_error = str(exc)
        job.timings["preview_s"] = time.perf_counter() - preview_start
    job.timings["total_s"] = time.perf_counter() - start
    return job


def _lora_in_folder(folder: Path, name: str) -> Path:
    """The file of a LoRA named as <lora:NAME:1> names it, inside the Lora folder only."""
    folder = folder.resolve()
    path = (folder / safe_relative_name(name)).resolve()
    if folder not in path.parents or not path.is_file():
        raise ConfigError(f"No LoRA named {name!r} in {folder}; use the name <lora:NAME:1> takes.")
    return path


def check_lora(name: str, strength: float, host: Host) -> dict[str, Any]:
    """Audit an erasure LoRA of the loras folder on the loaded checkpoint (often not the one it was made on) at
    `strength`, and say whether the erasure held there (issue 24.3)."""
    config, lora = check_settings(load_lora(_lora_in_folder(host.lora_folder(), name)), strength)
    callbacks = host.callbacks()
    try:
        with borrowed_model(host.sd_model(), host.active_networks(), host.load_model_gpu(), host.clip_skip()) as b:
            report = run_audit(b, lora, config, should_stop=callbacks.should_stop)
    finally:
        host.release_memory()
    held, verdict = transfer_verdict(report, config.erased_at, reference=made_on_scores(lora))
    return {"lora": name, "strength": strength, "held": held, "verdict": verdict, "audit": report.to_dict()}


ATTACK_FIELDS = {"lora", "concept", "attacks", "budget", "seed", "samples", "held_out"}


def attack_lora(request: dict[str, Any], host: Host) -> dict[str, Any]:
    """The recovery-attack audit of an erasure LoRA of the loras folder on the loaded checkpoint (issue 25):
    {"lora": NAME, "concept"?: C, "attacks"?: [...], "budget"?: seconds, "seed"?: S, "samples"?: N, "held_out"?: M},
    checked before the model is touched."""
    if unknown := set(request) - ATTACK_FIELDS:
        raise ConfigError(
            f"Unknown field(s) {sorted(unknown)}; an attack audit takes {', '.join(sorted(ATTACK_FIELDS))}."
        )
    name, concept, attacks = request.get("lora"), request.get("concept") or "", request.get("attacks", list(ATTACKS))
    budget, seed = request.get("budget", AttackConfig.budget_s), request.get("seed", 0)
    if not isinstance(name, str) or not name:
        raise ConfigError("Name the LoRA to attack, as <lora:NAME:1> takes it.")
    if (
        not isinstance(concept, str)
        or not isinstance(attacks, list | tuple)
        or not all(isinstance(a, str) for a in attacks)
    ):
        raise ConfigError("'concept' must be text and 'attacks' a list of attack names.")
    if (
        isinstance(budget, bool)
        or not isinstance(budget, int | float)
        or isinstance(seed, bool)
        or not isinstance(seed, int)
    ):
        raise ConfigError("'budget' must be a number of seconds and 'seed' a whole number.")
    sizes = {key: request.get(key, getattr(AttackConfig, key)) for key in ("samples", "held_out")}  # latents
    for key, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"'{key}' must be a whole number of latents.")
    lora = load_lora(_lora_in_folder(host.lora_folder(), name))
    config = attack_config(lora.metadata, concept, tuple(attacks), float(budget), seed, **sizes)
    callbacks = host.callbacks()
    try:
        with borrowed_model(host.sd_model(), host.active_networks(), host.load_model_gpu(), host.clip_skip()) as b:
            report = run_attack(b, lora_weights_for(b, lora), config, should_stop=callbacks.should_stop)
    finally:
        host.release_memory()
    return {"lora": name, **report.to_dict(), "text": attack_text(report)}


def default_name(config: EraseConfig) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", config.erase[0].lower()).strip("-")[:40] or "concept"
    return f"erased-{slug}"


def lora_target(folder: Path, name: str, overwrite: bool, numbered: bool) -> Path:
    """The file to write: inside `folder`, never over a file unless `overwrite`, and with a name that no other LoRA
    in the folder tree has (the WebUI lists LoRAs by file name, so `<lora:NAME:1>` must find exactly this one).
    A `numbered` (derived) name takes the first free of `name`, `name_2`, `name_3`, ..."""
    if numbered:
        base = safe_relative_name(name).with_suffix("")
        for n in itertools.count(1):
            candidate = base if n == 1 else base.with_name(f"{base.name}_{n}")
            if not (folder / candidate).with_suffix(SUFFIX).exists() and not _other_with_stem(folder, candidate.name):
                name = candidate.as_posix()
                break
    target = resolve_target(folder, name, overwrite)
    if other := _other_with_stem(folder, target.stem, target):
        raise ConfigError(
            f"Another LoRA is named '{target.stem}' ({other.relative_to(folder.resolve())}); <lora:{target.stem}:1> "
            "would be ambiguous. Choose another name."
        )
    return target


def _other_with_stem(folder: Path, stem: str, target: Path | None = None) -> Path | None:
    root = folder.resolve()
    if not root.is_dir():
        return None
    for path in root.rglob(f"{stem}.*"):
        if path.suffix.lower() in (SUFFIX, ".pt", ".ckpt") and path.stem == stem and path != target:
            return path
    return None


def save(result: EraseResult, target: Path) -> None:
    """The LoRA and its card, each written atomically; a card that cannot be written takes the LoRA back with it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    export_lora(result, target)
    try:
        write_card(target, result)
    except BaseException:
        target.unlink(missing_ok=True)
        raise


def write_card(lora_path: Path, result: EraseResult) -> Path:
    """The Lora tab's card: A1111 and Forge read `<name>.json` beside the file for its description and version."""
    c = result.config
    kept = f"; keeps {', '.join(c.keep)}" if c.keep else ""
    steps = "closed form" if c.closed_form else f"{result.steps_trained} steps"
    card = {
        "description": f"Erases {', '.join(c.erase)}{kept} ({c.method.upper()}, {steps}, made on {result.base_model}).",
        "sd version": SD_VERSION[result.arch],
        "activation text": "",
        "preferred weight": 1,
        "notes": "Made by the Concept Erasure extension. Audit (erasure of erased prompts, drift of the others):\n"
        + (result.audit.table() if result.audit else "(no audit)"),
    }
    path = lora_path.with_suffix(".json")
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(card, indent=2), encoding="utf-8")
    return path


def before_after_grid(host: Host, job: JobResult, request: ErasureRequest) -> tuple[Any, list[tuple[str, str]]]:
    """The erased, kept and neighbour prompts with the same seeds, without and with the new LoRA (WebUI txt2img)."""
    r = job.result
    rows = preview_rows(r.config.erase, r.config.keep, r.neighbours)
    prompts = [prompt for _, prompt in rows]
    size = request.preview_size or _native_size(job.result.arch)
    seed = job.result.config.seed
    before = host.txt2img(prompts, seed, size, request.preview_steps, request.preview_cfg)
    after = host.txt2img(
        [f"{p} {job.prompt_tag}" for p in prompts], seed, size, request.preview_steps, request.preview_cfg
    )
    if len(before) != len(prompts) or len(after) != len(prompts):
        raise ErasureError("The preview was interrupted before every image was drawn; the LoRA is saved.")
    cells = [[np.asarray(b.convert("RGB")), np.asarray(a.convert("RGB"))] for b, a in zip(before, after, strict=True)]
    labels = [row_label(*row) for row in rows]
    scale = max(1, 128 // size)  # small previews are drawn larger, to be seen
    return image_grid(cells, labels, ["before", "after"], scale=scale), rows


def _native_size(arch: str) -> int:
    return 1024 if arch == "sdxl" else 512
