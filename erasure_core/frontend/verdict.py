"""Whether an erasure held on the model it was applied to: the audit read against the stopping rule's threshold.

An erasure LoRA trained on one checkpoint is usually applied to another (a fine-tune or a merge of it). The audit
measures each erased concept's erasure on the model at hand, 0 to 1, the same score training stops on
(`erased_at`); so "held" means the LoRA erases there as far as training required on its own model.
"""

from __future__ import annotations

from dataclasses import replace

from ..audit import AuditReport
from ..config import EraseConfig
from ..lora.adapter import LoraTensors
from ..lora.export import LoraFile
from .settings import audit_config

CHECK_SAMPLES = 2  # latents per prompt in a check's quick audit


def transfer_verdict(report: AuditReport, erased_at: float, model: str = "this model") -> tuple[bool, str]:
    """(held, a sentence for the user): which erased concepts reach `erased_at` on `model`, and what to do if not."""
    erased = [r for r in report.rows if r["role"] == "erased"]
    short = [r for r in erased if r["erasure"] < erased_at]
    scores = ", ".join(f"{r['prompt']} {r['erasure']:.2f}" for r in erased)
    drift = report.summary()["drift_max"]
    moved = f"; other prompts moved by at most {drift:.2f} of their own effect" if drift is not None else ""
    if not short:
        return True, f"The erasure held on {model}: {scores} (training stops at {erased_at:g}){moved}."
    names = ", ".join(r["prompt"] for r in short)
    return False, (
        f"The erasure did not hold on {model} for {names}: {scores}, below the {erased_at:g} training stops at"
        f"{moved}. Apply it at a higher strength and check again, or train on this model starting from this "
        "LoRA (ComfyUI: Erase Concept's 'resume'; A1111/Forge: the tab's 'Continue from LoRA'; CLI: erase --model "
        "THIS_MODEL --resume THE_LORA)."
    )


def at_strength(lora: LoraFile, strength: float) -> LoraFile:
    """The LoRA as a loader applies it at `strength` (every layer's change scaled), for auditing what users run."""
    weights = {k: LoraTensors(w.down, w.up * strength, w.alpha) for k, w in lora.weights.items()}
    return replace(lora, weights=weights)


def check_settings(lora: LoraFile, strength: float) -> tuple[EraseConfig, LoraFile]:
    """What every host's check audits: the settings the LoRA was trained with, and the LoRA at `strength`."""
    return audit_config(lora.metadata, "", CHECK_SAMPLES, seed=0), at_strength(lora, strength)
