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

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from .backends.base import Backend, Conditioning
from .cancel import checkpoint, phase
from .lora.adapter import edit_disabled
from .sampling import ddim_sample, ddim_timesteps


@dataclass(frozen=True)
class Probe:
    """One audit prompt. Erased probes carry the method's target: eps(anchor) - eta * (eps(prompt) - eps(anchor)),
    where eps(anchor) is the weighted sum of the original model's predictions for `anchors` (ESD: the anchor
    prompt; UCE: the guide, eta 0; AGE: the learned target distribution over its candidates).
    """

    prompt: str
    role: str  # "erased", "kept", "guarded" (kept without being named: neighbours.py) or "neighbour"
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


class ProbeSet:
    """The audit's probes with everything the original model says about them computed once: latents sampled by the
    original model, its predictions there, each erased probe's target direction and each prompt's guidance size.
    `score()` then needs one edited forward per probe, so the trainer can measure erasure as it goes (`monitor.py`)
    with the same numbers the final audit reports."""

    @torch.no_grad()
    def __init__(
        self,
        backend: Backend,
        probes: Sequence[Probe],
        samples: int,
        ddim_steps: int,
        guidance: float,
        seed: int,
        latent_shape: tuple[int, int, int],
        encode_anchors: Callable[[Sequence[str]], Conditioning] | None = None,
    ) -> None:
        """`encode_anchors`: how the targets' prompts are encoded where the method encodes them otherwise than the
        sampler does (UCE's guide is the text encoder's real encoding; SDXL's sampler encodes "" as zeros)."""
        self.backend = backend
        self.probes = list(probes)
        self._cond_cache: dict[str, Conditioning] = {}
        self._anchor_cache: dict[str, Conditioning] = {}
        self._encode_anchors = encode_anchors or backend.encode_prompts
        self._cached: list[dict[str, Any]] = []
        if samples == 0 or not self.probes:
            return
        self._encode(sorted({p.prompt for p in self.probes} | {""}))
        self._encode_anchor_texts(sorted({a for p in self.probes for a, _ in p.anchors}))
        schedule = ddim_timesteps(backend.alphas_cumprod.shape[0], ddim_steps)
        path = tuple(reversed(schedule))
        record = [path[len(path) * k // 4] for k in (1, 2, 3)]  # a quarter, half and three quarters of the way down
        generator = torch.Generator().manual_seed(seed)
        z = torch.randn((samples, *latent_shape), generator=generator).to(backend.device)

        def predict(x: torch.Tensor, t: torch.Tensor, cond: Conditioning) -> torch.Tensor:
            return backend.predict_noise(x, t, cond)

        uncond = self._cond_cache[""]
        with edit_disabled(backend.unet):
            for probe in self.probes:
                cond = self._cond_cache[probe.prompt]
                _, latents = ddim_sample(
                    predict, z, cond.repeat(samples), uncond, guidance, path, backend.alphas_cumprod, record
                )
                x = torch.cat([latents[t] for t in record])
                t = torch.tensor(record, device=x.device).repeat_interleave(samples)
                checkpoint("audit")
                original, unconditional = predict_each(backend, x, t, [cond, uncond])
                entry = {"x": x, "t": t, "original": original, "guidance": (original - unconditional).norm()}
                self._cached.append(entry)
                if probe.role == "erased":
                    self._set_direction(entry, probe)

    @property
    def entries(self) -> list[dict[str, Any]]:
        """Per probe: its latents `x`, timesteps `t` and the original model's prediction there (`original`)."""
        return self._cached

    def _encode(self, prompts: Sequence[str]) -> None:
        new = [p for p in prompts if p not in self._cond_cache]
        if new:
            conds = self.backend.encode_prompts(new)
            self._cond_cache.update({text: conds.select(i) for i, text in enumerate(new)})

    def _encode_anchor_texts(self, prompts: Sequence[str]) -> None:
        new = [p for p in prompts if p not in self._anchor_cache]
        if new:
            conds = self._encode_anchors(new)
            self._anchor_cache.update({text: conds.select(i) for i, text in enumerate(new)})

    def _set_direction(self, entry: dict[str, Any], probe: Probe) -> None:
        """The erased probe's target minus the original prediction: eps(anchor) - eta (eps(c) - eps(anchor)) - eps(c)."""
        checkpoint("audit")
        original = entry["original"]
        anchor_preds = predict_each(
            self.backend, entry["x"], entry["t"], [self._anchor_cache[a] for a, _ in probe.anchors]
        )
        anchor = sum(w * p for (_, w), p in zip(probe.anchors, anchor_preds, strict=True))
        entry["direction"] = (anchor - probe.eta * (original - anchor)) - original

    @torch.no_grad()
    def retarget(self, prompt: str, anchors: tuple[tuple[str, float], ...]) -> None:
        """Point an erased probe at a new target (AGE's learned distribution as it stands), so that what is measured
        is what training is steering to."""
        for i, probe in enumerate(self.probes):
            if probe.prompt == prompt and probe.role == "erased" and probe.anchors != anchors and self._cached:
                self._encode_anchor_texts([a for a, _ in anchors])
                self.probes[i] = Probe(probe.prompt, probe.role, anchors, probe.eta)
                with edit_disabled(self.backend.unet):
                    self._set_direction(self._cached[i], self.probes[i])

    @torch.no_grad()
    def score(self) -> AuditReport:
        """Erasure and drift of every probe under the edit currently in the UNet."""
        report = AuditReport()
        for probe, entry in zip(self.probes, self._cached, strict=False):
            checkpoint("audit")
            n = entry["x"].shape[0]
            edited = self.backend.predict_noise(entry["x"], entry["t"], self._cond_cache[probe.prompt].repeat(n))
            change = edited.float() - entry["original"]
            row: dict[str, Any] = {
                "prompt": probe.prompt,
                "role": probe.role,
                "drift": float(change.norm() / entry["guidance"].clamp_min(1e-12)),
            }
            if probe.role == "erased":
                direction = entry["direction"]
                coefficient = (change * direction).sum() / (direction * direction).sum().clamp_min(1e-12)
                row["erasure"] = float(coefficient.clamp(0.0, 1.0))
            report.rows.append(row)
        return report


def audit_loaded(
    backend: Backend,
    probes: Sequence[Probe],
    samples: int,
    ddim_steps: int,
    guidance: float,
    seed: int,
    latent_shape: tuple[int, int, int],
    encode_anchors: Callable[[Sequence[str]], Conditioning] | None = None,
) -> AuditReport:
    """Audit the LoRA currently injected in `backend.unet` (see `erasure_core.run_audit` for a file or weights)."""
    with phase("audit"):
        return ProbeSet(backend, probes, samples, ddim_steps, guidance, seed, latent_shape, encode_anchors).score()


def predict_each(backend: Backend, x: torch.Tensor, t: torch.Tensor, conds: list[Conditioning]) -> list[torch.Tensor]:
    """Predictions on the same latents for each single-prompt conditioning, in one batch."""
    n = x.shape[0]
    out = backend.predict_noise(
        x.repeat(len(conds), 1, 1, 1), t.repeat(len(conds)), Conditioning.cat([c.repeat(n) for c in conds])
    )
    return list(out.float().chunk(len(conds)))
