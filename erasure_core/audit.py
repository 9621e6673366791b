"""The audit: how much an edit erased what it should and how much it moved what it should not.

Works on any model, random weights included, because it compares the edited and the original predictions on the
same latents instead of judging images. For each probe prompt, latents come from the *original* model sampling
that prompt (fixed seed), recorded at a few timesteps across the trajectory.

- erasure (erased prompts): how far the edited prediction moved from the original towards the method's target,
  the projection coefficient <eps_edit - eps_orig, target - eps_orig> / |target - eps_orig|^2 clipped to 0..1.
- drift (every other prompt): |eps_edit - eps_orig| / |eps_orig(prompt) - eps_orig("")|, the change relative to
  the size of that prompt's own guidance signal (0 = untouched; 1 = as large as what the prompt itself does).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from .backends.base import Backend, Conditioning
from .lora.adapter import edit_disabled
from .sampling import ddim_sample, ddim_timesteps


@dataclass(frozen=True)
class Probe:
    """One audit prompt. Erased probes carry the method's target: eps(anchor) - eta * (eps(prompt) - eps(anchor)),
    where eps(anchor) is the weighted sum of the original model's predictions for `anchors` (ESD: the anchor
    prompt; UCE: the guide, eta 0; AGE: the learned target distribution over its candidates).
    """

    prompt: str
    role: str  # "erased", "kept" or "neighbour"
    anchors: tuple[tuple[str, float], ...] = (("", 1.0),)
    eta: float = 1.0


@dataclass
class AuditReport:
    rows: list[dict[str, Any]] = field(default_factory=list)

    def mean(self, role: str, key: str) -> float | None:
        values = [r[key] for r in self.rows if r["role"] == role]
        return sum(values) / len(values) if values else None

    def summary(self) -> dict[str, float | None]:
        drifts = [r["drift"] for r in self.rows if r["role"] != "erased"]
        return {
            "erasure_mean": self.mean("erased", "erasure"),
            "kept_drift_mean": self.mean("kept", "drift"),
            "neighbour_drift_mean": self.mean("neighbour", "drift"),
            "drift_max": max(drifts) if drifts else None,
        }

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "summary": self.summary()}

    def table(self) -> str:
        """Plain-text table for terminals and host text outputs."""
        width = max([len(r["prompt"]) for r in self.rows] + [6])
        lines = [f"{'prompt':<{width}}  {'role':<9}  {'erasure':>7}  {'drift':>6}"]
        for r in self.rows:
            erasure = f"{r['erasure']:.2f}" if "erasure" in r else "-"
            lines.append(f"{r['prompt']:<{width}}  {r['role']:<9}  {erasure:>7}  {r['drift']:>6.2f}")
        return "\n".join(lines)


@torch.no_grad()
def audit_loaded(
    backend: Backend,
    probes: Sequence[Probe],
    samples: int,
    ddim_steps: int,
    guidance: float,
    seed: int,
    latent_shape: tuple[int, int, int],
) -> AuditReport:
    """Audit the LoRA currently injected in `backend.unet` (see `erasure_core.run_audit` for a file or weights)."""
    report = AuditReport()
    if samples == 0 or not probes:
        return report
    prompts = sorted({p.prompt for p in probes} | {a for p in probes for a, _ in p.anchors} | {""})
    conds = backend.encode_prompts(prompts)
    cond_of = {text: conds.select(i) for i, text in enumerate(prompts)}
    schedule = ddim_timesteps(backend.alphas_cumprod.shape[0], ddim_steps)
    path = tuple(reversed(schedule))
    record = [path[len(path) * k // 4] for k in (1, 2, 3)]  # a quarter, half and three quarters of the way down
    generator = torch.Generator().manual_seed(seed)
    z = torch.randn((samples, *latent_shape), generator=generator).to(backend.device)

    def predict(x: torch.Tensor, t: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        return backend.predict_noise(x, t, cond)

    for probe in probes:
        cond = cond_of[probe.prompt].repeat(samples)
        with edit_disabled(backend.unet):
            _, latents = ddim_sample(predict, z, cond, cond_of[""], guidance, path, backend.alphas_cumprod, record)
        x = torch.cat([latents[t] for t in record])
        t = torch.tensor(record, device=x.device).repeat_interleave(samples)
        n = x.shape[0]
        edited = backend.predict_noise(x, t, cond_of[probe.prompt].repeat(n)).float()
        with edit_disabled(backend.unet):
            original, uncond = _predict_each(backend, x, t, [cond_of[probe.prompt], cond_of[""]])
        change = edited - original
        row: dict[str, Any] = {
            "prompt": probe.prompt,
            "role": probe.role,
            "drift": float(change.norm() / (original - uncond).norm().clamp_min(1e-12)),
        }
        if probe.role == "erased":
            with edit_disabled(backend.unet):
                anchor_preds = _predict_each(backend, x, t, [cond_of[a] for a, _ in probe.anchors])
            anchor = sum(w * p for (_, w), p in zip(probe.anchors, anchor_preds, strict=True))
            direction = (anchor - probe.eta * (original - anchor)) - original
            coefficient = (change * direction).sum() / (direction * direction).sum().clamp_min(1e-12)
            row["erasure"] = float(coefficient.clamp(0.0, 1.0))
        report.rows.append(row)
    return report


def _predict_each(backend: Backend, x: torch.Tensor, t: torch.Tensor, conds: list[Conditioning]) -> list[torch.Tensor]:
    """Predictions on the same latents for each single-prompt conditioning, in one batch."""
    n = x.shape[0]
    out = backend.predict_noise(
        x.repeat(len(conds), 1, 1, 1), t.repeat(len(conds)), Conditioning.cat([c.repeat(n) for c in conds])
    )
    return list(out.float().chunk(len(conds)))
