"""`erase()`: run one method on a backend's model and return the LoRA, the audit and the run's record.

Compute, check, commit: prompts are encoded and candidate sets built before any layer is touched; LoRA layers are
injected into the host's UNet for the run and always removed in `finally`, so an error or a cancel leaves the
host's model exactly as it was. Nothing is written to disk here (see `export_lora`).
"""

from __future__ import annotations

import logging
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .audit import AuditReport, Probe, audit_loaded
from .backends.base import Backend, encode_text, kohya_aliases
from .callbacks import INFO_ERASURE, INFO_PHASE, INFO_PREVIEW, INFO_UNET_EVALS, Callbacks
from .cancel import cancellable, checkpoint
from .candidates import Encode
from .config import EraseConfig, UceConfig
from .context import Prompts, TrainingContext
from .defaults import UCE_TEMPLATES
from .errors import ConfigError, ModelError, ResourceError
from .layers import is_trainable_type, select_modules
from .lora.adapter import LoraWeights, extract_lora, has_lora, inject_lora, load_lora_weights, remove_lora
from .lora.export import LoraFile, build_metadata, save_lora_file, to_kohya_state_dict, weights_for_modules
from .lora.keys import kohya_key_map
from .methods import TRAINED_METHODS
from .methods.uce import expand, uce_weights
from .monitor import Check, ErasureMonitor
from .neighbours import guarded_neighbours, shown_neighbours
from .resume import TrainingState, capture, check_resumable, restore
from .version import __version__

logger = logging.getLogger(__name__)


@dataclass
class EraseResult:
    """Everything a run produced. `export_lora` writes it; `report()` is the JSON the CLI's --report holds."""

    config: EraseConfig
    weights: LoraWeights
    key_map: dict[str, str]
    arch: str
    base_model: str
    fingerprint: str
    losses: list[float] = field(default_factory=list)
    found: dict[str, list[str]] = field(default_factory=dict)
    neighbours: dict[str, list[str]] = field(default_factory=dict)  # what the audit and the grid show (`neighbours`)
    guarded: dict[str, list[str]] = field(
        default_factory=dict
    )  # kept neighbours per erased concept (`guard_neighbours`)
    targets: dict[str, list[tuple[str, float]]] = field(default_factory=dict)
    audit: AuditReport | None = None
    seconds: float = 0.0
    peak_memory_mb: float = 0.0
    unet_evals: int = 0
    resumed_from: str | None = None
    previous_steps: int = 0  # steps already in the LoRA this run resumed from
    resumed_optimizer: str = ""  # what became of the optimiser state on resume (restored, or why fresh)
    training_state: dict[str, torch.Tensor] = field(default_factory=dict)  # Adam's moments at the end (`resume`)
    steps_trained: int = 0  # this run's steps: `steps`, or fewer where every concept was erased sooner
    checks: list[dict[str, Any]] = field(default_factory=list)  # the monitor's measurements (`until_erased`)
    not_erased: dict[str, float] = field(default_factory=dict)  # concepts below `erased_at` when the budget ran out

    def kohya_state_dict(self, dtype: torch.dtype = torch.float16) -> dict[str, torch.Tensor]:
        """The LoRA as kohya tensors (what ComfyUI's LORA_MODEL and every loader take)."""
        return to_kohya_state_dict(self.weights, self.key_map, dtype)

    def info(self) -> dict[str, Any]:
        """Our metadata fields (written as `erasure_<key>` in the file header)."""
        c = self.config
        return {
            "method": c.method,
            "erased": list(c.erase),
            "kept": list(c.keep),
            "found": self.found,
            "neighbours": self.neighbours,
            "guarded": self.guarded,
            "targets": self.targets,
            "steps": self.previous_steps + self.steps_trained,
            "not_erased": self.not_erased,
            "base_model": self.base_model,
            "base_model_fingerprint": self.fingerprint,
            "config": c.resolved().to_dict(),  # as trained: another engine version may resolve an 'auto' otherwise
            "resumed_from": self.resumed_from or "",
            "audit": self.audit.rows if self.audit else [],
            "losses": [float(f"{v:.5g}") for v in self.losses],
        }

    def report(self) -> dict[str, Any]:
        return {
            "version": __version__,
            "settings": self.config.to_dict(),
            "arch": self.arch,
            "base_model": self.base_model,
            "base_model_fingerprint": self.fingerprint,
            "seconds": round(self.seconds, 3),
            "peak_memory_mb": round(self.peak_memory_mb, 1),
            "unet_evals": self.unet_evals,
            "unet_evals_per_concept": self.unet_evals / max(1, len(self.config.erase)),
            "pool_refreshes": self.config.resolved_pool_refreshes(),  # 'auto' resolved; 0 = fresh latents
            "ddim_steps": self.config.resolved_ddim_steps(),  # 'auto' resolved
            "pool_fresh_steps": self.config.resolved_pool_fresh_steps(),  # 'auto' resolved
            "losses": self.losses,
            "found": self.found,
            "neighbours": self.neighbours,
            "targets": self.targets,
            "lora_layers": len(self.weights),
            "audit": self.audit.to_dict() if self.audit else None,
            "resumed_from": self.resumed_from,
            "previous_steps": self.previous_steps,
            "resumed_optimizer": self.resumed_optimizer,
            "steps_trained": self.steps_trained,
            "erasure_checks": self.checks,
            "not_erased": self.not_erased,
            "stop_reason": self.stop_reason(),
        }

    def stop_reason(self) -> str:
        """One sentence on how training ended, for the CLI, the nodes and the tab."""
        c = self.config
        if c.closed_form:
            return f"{c.method.upper()} edits in closed form (no training steps)."
        if c.robust:
            return f"Trained the whole budget of {self.steps_trained} steps against the recovery attack (robust mode)."
        if not c.until_erased:
            return f"Trained the fixed {self.steps_trained} steps."
        if not self.not_erased and self.resumed_from and not self.steps_trained:
            return (
                f"The resumed LoRA already erases every concept on this model (measured erasure >= {c.erased_at}); "
                "no steps were needed."
            )
        if not self.not_erased:
            return f"Every concept was erased (measured erasure >= {c.erased_at}) after {self.steps_trained} steps."
        names = ", ".join(f"{k} ({v:.2f})" for k, v in self.not_erased.items())
        return (
            f"The budget of {c.steps} steps per concept ran out before {names} reached erasure {c.erased_at}; "
            "raise steps or the learning rate, or resume from this LoRA."
        )


def erase(
    backend: Backend,
    config: EraseConfig,
    callbacks: Callbacks | None = None,
    resume: LoraFile | None = None,
    resume_state: TrainingState | None = None,
) -> EraseResult:
    """Erase `config.erase` from the backend's model and return the LoRA that does it.

    Args:
        backend: the model (see `Backend`); its UNet is borrowed for the run and handed back unchanged.
        config: a method config (`EsdConfig`, `EapConfig`, `AgeConfig`, `UceConfig`).
        callbacks: progress and cancellation hooks.
        resume: a LoRA (from `load_lora`) to continue training from; it must fit this model and have been made
            with this run's method, erased concepts, layers and rank.
        resume_state: the optimiser state kept beside that LoRA (`resume.load_state`); without it Adam starts
            afresh, and the result says so.

    Raises:
        ConfigError, ModelError, NumericalError, ResourceError, Cancelled (all `ErasureError`).
    """
    callbacks = callbacks or Callbacks()
    unet = backend.unet
    if has_lora(unet):
        raise ModelError("The model already carries an erasure LoRA from an unfinished run; reload the model.")
    if resume is not None and config.closed_form:
        raise ConfigError(
            f"{config.method.upper()} is a closed-form edit of the original weights; there is nothing to resume. "
            "Drop the resume file."
        )
    if resume is not None:
        check_resumable(resume, config, _resume_name(resume))
    key_map = _key_map(backend)
    modules = select_modules(unet.named_modules(), config.layers)
    latent_shape = backend.latent_shape(config.resolution)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    result = EraseResult(config, {}, key_map, backend.arch, backend.name, backend.fingerprint())
    try:
        with cancellable(callbacks.should_stop):
            if config.guard_neighbours:
                callbacks.on_step(0, config.total_steps, {INFO_PHASE: "search"})
            result.guarded = guarded_neighbours(backend, config, latent_shape)
            prompts = _encode_prompts(backend, config, result.guarded)
            if config.method == "uce":
                result.weights = _uce(backend, config, modules, prompts)
                load_lora_weights(unet, result.weights)
                callbacks.on_step(1, 1, {INFO_PHASE: "train"})
                result.neighbours = shown_neighbours(backend, config, {})
                probes = _probes(config, result.neighbours, {}, result.guarded)
            else:
                probes = _train(
                    backend, config, callbacks, prompts, modules, latent_shape, resume, resume_state, result
                )
            callbacks.on_step(config.total_steps, config.total_steps, {INFO_PHASE: "audit"})
            result.audit = audit_loaded(
                backend,
                probes,
                config.audit_samples,
                config.audit_ddim_steps,
                config.sample_guidance,
                config.seed,
                latent_shape,
                _anchor_encoder(backend, config),
            )
            result.weights = extract_lora(unet)
    except torch.OutOfMemoryError as exc:
        raise ResourceError(
            f"Out of memory on {backend.device} while erasing: {exc}. Free memory (close other models or generations), "
            "train at a lower resolution, choose a smaller layer set such as 'xattn', or run on a larger device."
        ) from exc
    finally:
        remove_lora(unet)
    result.seconds = time.perf_counter() - start
    result.peak_memory_mb = _peak_memory_mb(backend.device)
    return result


def _anchor_encoder(backend: Backend, config: EraseConfig) -> Encode:
    """How the method encodes its target's prompts. UCE's guide is the text encoders' real encoding: a backend may
    encode "" as the sampler's unconditional rule has it (SDXL pipelines: zeros), which would map the concept's keys
    and values to zero (`encode_text`, an optional backend capability). The trained methods' anchor is the
    sampler's."""
    if config.method == "uce":
        return encode_text(backend)
    return backend.encode_prompts


def _uce(backend: Backend, config: UceConfig, modules: list[str], prompts: Prompts) -> LoraWeights:
    """UCE's closed form over each erased and kept concept, bare and in `config.templates` (prompt expansion), each
    erased prompt mapped onto the guide in the same template."""
    templates = UCE_TEMPLATES[: config.templates]
    per = 1 + len(templates)
    guides = _anchor_encoder(backend, config)(expand([config.guide] * len(prompts.erased), templates))
    erased = backend.encode_prompts(expand(prompts.erased, templates)) if templates else prompts.erased_conds
    kept = prompts.keep_conds
    if templates and prompts.keep:
        kept = backend.encode_prompts(expand(prompts.keep, templates))
    erase_weights = [w for w in config.erase_weights for _ in range(per)]
    keep_weights = [w for w in prompts.keep_weights for _ in range(per if templates else 1)]
    return uce_weights(backend.unet, modules, erased, guides, kept, erase_weights, keep_weights, config)


def _encode_prompts(backend: Backend, config: EraseConfig, guarded: dict[str, list[str]] | None = None) -> Prompts:
    erased = list(config.erase)
    extra = [w for words in (guarded or {}).values() for w in words]
    keep = list(config.keep) + extra
    texts = erased + keep + ["", config.anchor]
    conds = backend.encode_prompts(texts)
    n_e, n_k = len(erased), len(keep)
    uncond = conds.select(n_e + n_k)
    return Prompts(
        erased=erased,
        erased_conds=conds.select(slice(0, n_e)),
        keep=keep,
        keep_conds=conds.select(slice(n_e, n_e + n_k)) if keep else None,
        keep_weights=list(config.keep_weights) + [1.0] * len(extra),
        uncond=uncond,
        # One object when the anchor is "": see TrainingContext.pooled_anchor_and_erased.
        anchor=uncond if config.anchor == "" else conds.select(n_e + n_k + 1),
    )


def _train(
    backend: Backend,
    config: EraseConfig,
    callbacks: Callbacks,
    prompts: Prompts,
    modules: list[str],
    latent_shape: tuple[int, int, int],
    resume: LoraFile | None,
    resume_state: TrainingState | None,
    result: EraseResult,
) -> list[Probe]:
    method = TRAINED_METHODS[config.method]
    unet = backend.unet
    ctx = TrainingContext(backend, config, prompts, latent_shape)
    total = config.total_steps
    callbacks.on_step(0, total, {INFO_PHASE: "search"})
    state = method.prepare(ctx)  # candidate search runs before the model is touched
    if resume is not None:
        params = load_lora_weights(
            unet, weights_for_modules(resume, result.key_map, _module_shapes(unet), kohya_aliases(backend))
        )
        result.resumed_from = _resume_name(resume)
        result.previous_steps = int(resume.info().get("steps") or 0)
    else:
        with torch.random.fork_rng(devices=[]):  # seeded LoRA init without touching the host's global RNG
            torch.manual_seed(config.seed)
            params = inject_lora(unet, modules, config.rank, config.alpha)
    ctx.set_trainable(params, fresh=resume is None)
    names = {id(p): name for name, p in unet.named_parameters()}
    if resume is not None:
        result.resumed_optimizer = _restore_optimizers(ctx, names, resume_state)
    stops_early = config.until_erased and not config.robust  # a robust erasure is not done when its name is erased
    monitor = _monitor(backend, config, state, latent_shape, result.guarded) if stops_early else None
    steps = range(1, total + 1)
    if monitor is not None and resume is not None:  # resumed on another model (a fine-tune): it may hold there already
        check = _measure(monitor, state, 0)
        result.not_erased = {config.erase[i]: check.erasure[config.erase[i]] for i in monitor.pending(check)}
        if trainable := monitor.trainable():
            ctx.set_active(trainable)
        else:
            steps = range(0)
    for step in steps:
        checkpoint("train", f"at step {step - 1} of {total}")
        ctx.begin_step(step)
        info = method.train_step(ctx, state)
        info[INFO_PHASE] = "train"
        info[INFO_UNET_EVALS] = ctx.unet_evals
        result.losses.append(info["loss"])
        result.steps_trained = step
        if callbacks.preview_every and step % callbacks.preview_every == 0 and ctx.last_latent is not None:
            info[INFO_PREVIEW] = ctx.last_latent
        trainable = None
        if monitor is not None:
            monitor.count(ctx.current)
            check = _measure(monitor, state, step) if monitor.due(step, total) else None
            trainable = monitor.trainable()
            if not trainable and check is None:  # the last budget just ran out: measure where it ended
                check = _measure(monitor, state, step)
                trainable = monitor.trainable()
            if check is not None:
                info[INFO_ERASURE] = check.erasure
                result.not_erased = {config.erase[i]: check.erasure[config.erase[i]] for i in monitor.pending(check)}
            if trainable:
                ctx.set_active(trainable)
        callbacks.on_step(step, total, info)
        if trainable == []:
            break
    result.unet_evals = ctx.unet_evals
    result.training_state = capture(ctx.optimizers, names)
    if monitor is not None:
        result.checks = [c.to_dict() for c in monitor.checks]
    if state is not None:
        result.found = state.found()
        if config.method == "age":
            result.targets = state.targets()
    result.neighbours = shown_neighbours(backend, config, state.neighbours() if state is not None else {})
    return _probes(config, result.neighbours, result.targets, result.guarded)


def _resume_name(lora: LoraFile) -> str:
    return lora.metadata.get("ss_output_name") or "the LoRA to resume"


def _restore_optimizers(ctx: TrainingContext, names: dict[int, str], state: TrainingState | None) -> str:
    """Adam's moments from the state saved beside the resumed LoRA; what happened, for the report."""
    if state is None:
        return "fresh: no saved optimizer state was given"
    if state.tensors is None:
        return f"fresh: {state.note}"
    if not restore(ctx.optimizers, names, state.tensors):
        return "fresh: the saved optimizer state is for other layers or another number of concepts"
    return state.note


def _measure(monitor: ErasureMonitor, state: Any, step: int) -> Check:
    """Every concept's erasure under the edit now; AGE's towards the target training is steering to now."""
    if monitor.config.method == "age":
        monitor.retarget(state.targets())
    return monitor.check(step)


def _monitor(
    backend: Backend,
    config: EraseConfig,
    state: Any,
    latent_shape: tuple[int, int, int],
    guarded: dict[str, list[str]],
) -> ErasureMonitor:
    """The erased, kept and guarded concepts, and for EAP and AGE the two closest words of each concept's candidates."""
    nearby = {s.concept: s.words[:2] for s in state.searches} if state is not None else {}
    return ErasureMonitor(backend, config, _probes(config, nearby, {}, guarded), latent_shape)


def _key_map(backend: Backend) -> dict[str, str]:
    unet = backend.unet
    layers_per_block = getattr(getattr(unet, "config", None), "layers_per_block", None)
    return kohya_key_map(
        [name for name, _ in unet.named_modules()], backend.arch, backend.module_naming, layers_per_block
    )


def _module_shapes(unet: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {name: tuple(m.weight.shape) for name, m in unet.named_modules() if is_trainable_type(m)}


def _probes(
    config: EraseConfig,
    neighbours: dict[str, list[str]],
    targets: dict[str, list[tuple[str, float]]],
    guarded: dict[str, list[str]] | None = None,
) -> list[Probe]:
    """Erased concepts (with the method's target), kept and guarded concepts, and each erased concept's neighbours."""
    anchors: tuple[tuple[str, float], ...] = ((config.anchor, 1.0),)
    eta = config.negative_guidance
    if config.method == "uce":
        anchors, eta = ((config.guide, 1.0),), 0.0  # UCE maps the concept onto the guide's projections
    probes = []
    for concept, weight in zip(config.erase, config.erase_weights, strict=True):
        own = tuple((w, float(p)) for w, p in targets.get(concept, ())) or anchors
        probes.append(Probe(concept, "erased", own, eta * weight))
    probes += [Probe(k, "kept") for k in config.keep]
    probes += [Probe(w, "guarded") for words in (guarded or {}).values() for w in words]
    taken = {p.prompt.lower() for p in probes}
    for words in neighbours.values():
        for word in words:
            if word.lower() not in taken:
                taken.add(word.lower())
                probes.append(Probe(word, "neighbour"))
    return probes


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # process peak RSS: KiB on Linux, bytes on macOS
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def export_lora(
    result: EraseResult, path: str | Path, dtype: torch.dtype = torch.float16, description: str | None = None
) -> Path:
    """Write the result as a kohya `.safetensors` LoRA with our metadata, atomically. Returns the path."""
    path = Path(path)
    c = result.config
    ranks = {w.rank for w in result.weights.values()}
    alphas = {w.alpha for w in result.weights.values()}
    text = description or f"{c.method.upper()} erasure of {', '.join(c.erase)}" + (
        f"; kept {', '.join(c.keep)}" if c.keep else ""
    )
    metadata = build_metadata(
        arch=result.arch,
        output_name=path.stem,
        rank=max(ranks),
        alpha=max(alphas) if len(alphas) == 1 else max(ranks),
        info=result.info(),
        base_model=result.base_model,
        description=text,
    )
    return save_lora_file(result.kohya_state_dict(dtype), path, metadata)


def lora_weights_for(backend: Backend, lora: LoraFile) -> LoraWeights:
    """A loaded LoRA file as weights for this backend's UNet; refuses a file made for another model."""
    return weights_for_modules(lora, _key_map(backend), _module_shapes(backend.unet), kohya_aliases(backend))


def run_audit(
    backend: Backend,
    weights: LoraWeights | LoraFile,
    config: EraseConfig,
    extra_prompts: tuple[str, ...] = (),
    should_stop: Callable[[], bool] | None = None,
) -> AuditReport:
    """Audit a LoRA (in memory or loaded from a file) on the backend's model; the model is left unchanged.
    `should_stop` is the host's cancel hook (polled once per UNet evaluation)."""
    unet = backend.unet
    if isinstance(weights, LoraFile):
        info = weights.info()
        weights = lora_weights_for(backend, weights)
        # files from before `neighbours` was recorded show none of their finds: not all were told from noise
        searched, targets = info.get("neighbours") or {}, info.get("targets") or {}
        guarded = info.get("guarded") or {}
    else:
        searched, targets, guarded = {}, {}, {}
    neighbours = shown_neighbours(backend, config, searched)
    probes = _probes(config, neighbours, targets, guarded) + [Probe(p, "neighbour") for p in extra_prompts]
    load_lora_weights(unet, weights)
    try:
        with cancellable(should_stop):
            return audit_loaded(
                backend,
                probes,
                config.audit_samples or 2,
                config.audit_ddim_steps,
                config.sample_guidance,
                config.seed,
                backend.latent_shape(config.resolution),
                _anchor_encoder(backend, config),
            )
    finally:
        remove_lora(unet)
