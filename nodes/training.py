"""Erase Concept's work: train on the MODEL the user loaded, cache the LoRA, return a clean patched MODEL.

Order matters (hosts.md §2.3, §2.5, §7): the UNet is loaded fully onto ComfyUI's device and made autograd-safe;
training runs outside inference mode; the LoRA layers live on the shared UNet only during `erase()` (which always
removes them); the MODEL handed back is a fresh clone of the user's MODEL with the finished LoRA added as ordinary
patches. If loading the text encoder makes ComfyUI offload the UNet, the backend stops the run with a message.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import comfy.model_management as mm
import comfy.sd
import torch

from ..erasure_core import (
    AttackConfig,
    AttackReport,
    Cancelled,
    EraseConfig,
    LoraFile,
    erase,
    export_lora,
    lora_weights_for,
    run_attack,
    run_audit,
)
from ..erasure_core.frontend import lora_from_tensors
from ..erasure_core.frontend.cache import LoraCache, cache_key, tensors_fingerprint
from ..erasure_core.frontend.lora_info import describe, recorded_losses
from .comfy_backend import ComfyBackend
from .runtime import ErasureLora, cache_folder, comfy_callbacks, read_lora_file

logger = logging.getLogger(__name__)


@dataclass
class ErasureOutput:
    model: Any  # a ModelPatcher: clone of the input plus the LoRA patches
    lora: ErasureLora
    losses: list[float]
    audit_text: str
    cached: bool


def apply_lora(model: Any, lora: dict[str, torch.Tensor], strength: float = 1.0) -> Any:
    """A clone of `model` with `lora` added as weight patches, exactly as ComfyUI's LoraLoader does it."""
    return comfy.sd.load_lora_for_models(model, None, lora, strength, 0.0)[0]


def run_erasure(
    model: Any,
    clip: Any,
    config: EraseConfig,
    node_id: str | None,
    use_cache: bool = True,
    resume: dict[str, torch.Tensor] | None = None,
) -> ErasureOutput:
    """Train (or fetch from the on-disk cache) the erasure LoRA for `config` on `model`; with `resume` (a LORA_MODEL
    made by this pack) training continues from it, e.g. to top a LoRA up on a fine-tune of its model."""
    start = None
    if resume is not None:
        start = lora_from_tensors(resume, getattr(resume, "metadata", {}) or {}, "The LoRA connected to 'resume'")
    backend = ComfyBackend(model.clone(), clip, name=_model_name(model))
    backend.cache_folder = cache_folder().parent / "vocabulary-distances"  # EAP's and AGE's search set-up
    cache = LoraCache(cache_folder())
    try:
        with torch.inference_mode(False), torch.enable_grad():
            backend.load()
            conds = backend.encode_prompts([*config.erase, *config.keep, "", config.anchor])
            text_id = tensors_fingerprint([conds.context] + ([conds.pooled] if conds.pooled is not None else []))
            resumed = {"resume": tensors_fingerprint(resume[k] for k in sorted(resume))} if resume else {}
            key = cache_key(backend.fingerprint(), text_id, config, {"arch": backend.arch, **resumed})
            cached = cache.get(key) if use_cache else None
            if cached is None:
                try:
                    callbacks = comfy_callbacks(node_id, config.total_steps, config.method)
                    result = erase(backend, config, callbacks, resume=start)
                except Cancelled as exc:
                    raise mm.InterruptProcessingException() from exc
                export_lora(result, cache.put_path(key))
                losses = result.losses
            else:
                logger.info("Concept erasure: using the cached LoRA %s (same model, prompts and settings).", key)
                losses = []
            lora = read_lora_file(cache.path(key))
    finally:
        mm.soft_empty_cache()
    if not losses:
        losses = recorded_losses(lora.metadata)
    out = apply_lora(model, lora)
    return ErasureOutput(out, lora, losses, describe(lora.metadata), cached is not None)


def _model_name(model: Any) -> str:
    return type(getattr(model.model, "model_config", model.model)).__name__


@contextlib.contextmanager
def _loaded_clone(model: Any, clip: Any) -> Iterator[ComfyBackend]:
    """A clone of `model` loaded as a backend, outside inference mode; Cancel raises ComfyUI's interrupt."""
    backend = ComfyBackend(model.clone(), clip)
    try:
        with torch.inference_mode(False):
            backend.load()
            try:
                yield backend
            except Cancelled as exc:
                raise mm.InterruptProcessingException() from exc
    finally:
        mm.soft_empty_cache()


def audit_on_model(model: Any, clip: Any, lora: LoraFile, config: EraseConfig, extra: tuple[str, ...] = ()):
    """The audit of `lora` on `model` (a clone is loaded; Cancel raises ComfyUI's interrupt)."""
    with _loaded_clone(model, clip) as backend:
        return run_audit(backend, lora, config, extra, should_stop=mm.processing_interrupted)


def attack_on_model(model: Any, clip: Any, lora: LoraFile, config: AttackConfig) -> AttackReport:
    """The recovery-attack audit of `lora` on `model` (a clone is loaded; Cancel raises ComfyUI's interrupt)."""
    with _loaded_clone(model, clip) as backend, torch.enable_grad():
        return run_attack(backend, lora_weights_for(backend, lora), config, should_stop=mm.processing_interrupted)
