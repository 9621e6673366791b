"""Whether an erasure held on the model it was applied to: the audit read against the LoRA's own model.

An erasure LoRA trained on one checkpoint is usually applied to another (a fine-tune or a merge of it). The audit
measures each erased concept's erasure on the model at hand, 0 to 1. "Held" means it keeps most of the erasure the
same measurement gave on the model the LoRA was made on (its final audit, in its header); a LoRA without one is read
against `erased_at`, the threshold training stops at.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from ..audit import AuditReport
from ..config import EraseConfig
from ..lora.adapter import LoraTensors
from ..lora.export import LoraFile
from .settings import audit_config

CHECK_SAMPLES = 2  # latents per prompt in a check's quick audit when the LoRA's header names no audit of its own
# A concept held on another model when its erasure there is at least this share of its erasure on the model the LoRA
# was made on (the final audit in the LoRA's header, measured the same way). Chosen on the objects world's seed-0
# descendants, where the transferred ESD and UCE LoRAs erased every image they erased on their own model and the
# share went down to 0.77 (2 latents per concept are noisy); reported on the seed-1 descendants (docs/transfer.md).
HELD_SHARE = 0.75


def made_on_scores(lora: LoraFile) -> dict[str, float]:
    """Each erased concept's erasure on the model the LoRA was made on (its final audit, in the header); empty when
    the run had no audit."""
    return {r["prompt"]: float(r["erasure"]) for r in lora.info().get("audit") or [] if r.get("role") == "erased"}


def not_held(scores: Mapping[str, float], reference: Mapping[str, float], erased_at: float) -> list[str]:
    """The erased concepts that did not hold: below HELD_SHARE of their erasure on the LoRA's own model where the
    header has it, else below `erased_at`, the threshold training stops at."""
    return [c for c, s in scores.items() if s < (HELD_SHARE * reference[c] if c in reference else erased_at)]


def transfer_verdict(
    report: AuditReport, erased_at: float, model: str = "this model", reference: Mapping[str, float] | None = None
) -> tuple[bool, str]:
    """(held, a sentence for the user): whether each erased concept is erased on `model` about as far as on the model
    the LoRA was made on (`reference`, `made_on_scores`), else as far as training required; what to do if not."""
    reference = reference or {}
    erased = {r["prompt"]: r["erasure"] for r in report.rows if r["role"] == "erased"}
    short = not_held(erased, reference, erased_at)
    scores = ", ".join(
        f"{c} {v:.2f}" + (f" (made-on model: {reference[c]:.2f})" if c in reference else "") for c, v in erased.items()
    )
    bar = (
        f"{HELD_SHARE:.0%} of its erasure on the model it was made on"
        if reference
        else f"{erased_at:g}, where training stops"
    )
    drift = report.summary()["drift_max"]
    moved = f"; other prompts moved by at most {drift:.2f} of their own effect" if drift is not None else ""
    if not short:
        return True, f"The erasure held on {model}: {scores}; each is at least {bar}{moved}."
    return False, (
        f"The erasure did not hold on {model} for {', '.join(short)}: {scores}, below {bar}{moved}. Apply it at a "
        "higher strength and check again, or train on this model starting from this LoRA (ComfyUI: Erase "
        "Concept's 'resume'; A1111/Forge: the tab's 'Continue from LoRA'; CLI: erase --model THIS_MODEL --resume "
        "THE_LORA)."
    )


def at_strength(lora: LoraFile, strength: float) -> LoraFile:
    """The LoRA as a loader applies it at `strength` (every layer's change scaled), for auditing what users run."""
    weights = {k: LoraTensors(w.down, w.up * strength, w.alpha) for k, w in lora.weights.items()}
    return replace(lora, weights=weights)


def check_settings(lora: LoraFile, strength: float) -> tuple[EraseConfig, LoraFile]:
    """What every host's check audits: the settings the LoRA was trained with, measured as its final audit was (its
    latents per prompt and seed, so that `made_on_scores` compares like with like), and the LoRA at `strength`."""
    made = lora.info().get("config") or {}
    samples = made.get("audit_samples") or CHECK_SAMPLES
    return audit_config(lora.metadata, "", samples, seed=int(made.get("seed", 0))), at_strength(lora, strength)
