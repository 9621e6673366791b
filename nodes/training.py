"""Erase Concept's work: train on the MODEL the user loaded, cache the LoRA, return a clean patched MODEL.

Order matters (hosts.md §2.3, §2.5, §7): prompts are encoded before the UNet is loaded for training; training runs
outside inference mode; the LoRA layers live on the shared UNet only during `erase()` (which always removes them);
the MODEL handed back is a fresh clone of the user's MODEL with the finished LoRA added as ordinary patches.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import comfy.model_management as mm
import comfy.sd
import torch

from ..erasure_core.config import EraseConfig
from ..erasure_core.errors import Cancelled
from ..erasure_core.trainer import erase, export_lora
from .cache import LoraCache, cache_key, tensors_fingerprint
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


def audit_text(metadata: dict[str, str]) -> str:
    """Readable summary of a LoRA's erasure metadata (erased, kept, found concepts, audit rows)."""
    import json

    def field(key: str, default: Any) -> Any:
        try:
            return json.loads(metadata.get("erasure_" + key, ""))
        except json.JSONDecodeError:
            return metadata.get("erasure_" + key, default)

    lines = [
        f"method: {field('method', '?')}",
        f"erased: {', '.join(field('erased', []) or []) or '-'}",
        f"kept: {', '.join(field('kept', []) or []) or '-'}",
    ]
    found = field("found", {}) or {}
    for concept, words in found.items():
        lines.append(f"nearby concepts of '{concept}': {', '.join(words[:8])}")
    rows = field("audit", []) or []
    if rows:
        lines.append("")
        lines.append(f"{'prompt':<28} {'role':<9} {'erasure':>7} {'drift':>6}")
        for r in rows:
            erasure = f"{r['erasure']:.2f}" if "erasure" in r else "-"
            lines.append(f"{r['prompt'][:28]:<28} {r['role']:<9} {erasure:>7} {r['drift']:>6.2f}")
    return "\n".join(lines)


def run_erasure(
    model: Any, clip: Any, config: EraseConfig, node_id: str | None, use_cache: bool = True
) -> ErasureOutput:
    """Train (or fetch from the on-disk cache) the erasure LoRA for `config` on `model`."""
    backend = ComfyBackend(model.clone(), clip, name=_model_name(model))
    cache = LoraCache(cache_folder())
    try:
        with torch.inference_mode(False), torch.enable_grad():
            backend.load()
            conds = backend.encode_prompts([*config.erase, *config.keep, "", config.anchor])
            text_id = tensors_fingerprint([conds.context] + ([conds.pooled] if conds.pooled is not None else []))
            key = cache_key(backend.fingerprint(), text_id, config, {"arch": backend.arch})
            cached = cache.get(key) if use_cache else None
            if cached is None:
                try:
                    result = erase(backend, config, comfy_callbacks(node_id, _total(config), config.method))
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
        losses = _cached_losses(lora)
    out = apply_lora(model, lora)
    return ErasureOutput(out, lora, losses, audit_text(lora.metadata), cached is not None)


def _total(config: EraseConfig) -> int:
    return 1 if config.method == "uce" else config.steps


def _cached_losses(lora: ErasureLora) -> list[float]:
    import json

    try:
        return [float(v) for v in json.loads(lora.metadata.get("erasure_losses", "[]"))]
    except (json.JSONDecodeError, TypeError, ValueError):
        return []


def _model_name(model: Any) -> str:
    return type(getattr(model.model, "model_config", model.model)).__name__
