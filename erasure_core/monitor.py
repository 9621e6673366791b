"""Erasure that knows when it is done: every erased concept's erasure score, measured on fixed latents as training goes.

A step count tuned on one model means nothing on the next. The monitor holds the audit's probes (`ProbeSet`: latents
sampled once by the original model, its predictions there) and every `check_every` steps scores the edit in the UNet:
each erased concept's erasure (the audit's projection onto the method's target, 0..1) and the drift of the kept and
found neighbour concepts. The trainer trains only the concepts still below `erased_at` and stops once every one of
them is there, or once each concept not there has had its budget of `steps` updates, and says which concept did not
get there. The budget is per concept: a concept that resists must not take the updates the others did not need, which
on five concepts at once trained one concept for hundreds of steps and cost the untouched concepts their quality.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .audit import Probe, ProbeSet
from .backends.base import Backend
from .callbacks import INFO_ERASURE
from .cancel import phase
from .config import EraseConfig


@dataclass
class Check:
    """One measurement: the step it was taken after, erasure per erased concept, drift per other probe."""

    step: int
    erasure: dict[str, float]
    drift: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step, "erasure": self.erasure, "drift": self.drift}


class ErasureMonitor:
    def __init__(
        self,
        backend: Backend,
        config: EraseConfig,
        probes: list[Probe],
        latent_shape: tuple[int, int, int],
    ) -> None:
        self.config = config
        self.concepts = list(config.erase)
        with phase("check"):
            self.probes = ProbeSet(
                backend,
                probes,
                config.check_samples,
                config.audit_ddim_steps,
                config.sample_guidance,
                config.seed + 1,  # not the audit's latents: the final audit stays a held-out measurement
                latent_shape,
            )
        self.checks: list[Check] = []
        self.updates = [0] * len(self.concepts)  # training steps each concept has had

    def count(self, index: int) -> None:
        """One training step of erased concept `index`."""
        self.updates[index] += 1

    def spent(self, index: int) -> bool:
        return self.updates[index] >= self.config.steps

    def due(self, step: int, last: int) -> bool:
        return step % self.config.check_every == 0 or step == last

    def retarget(self, targets: dict[str, list[tuple[str, float]]]) -> None:
        """AGE: measure erasure towards the target distribution training is steering to now."""
        for concept, mixture in targets.items():
            if mixture:
                self.probes.retarget(concept, tuple((w, float(p)) for w, p in mixture))

    def check(self, step: int) -> Check:
        with phase("check"):
            report = self.probes.score()
        check = Check(
            step,
            {r["prompt"]: r["erasure"] for r in report.rows if r["role"] == "erased"},
            {r["prompt"]: r["drift"] for r in report.rows if r["role"] != "erased"},
        )
        self.checks.append(check)
        return check

    def pending(self, check: Check) -> list[int]:
        """Indices (into `config.erase`) of the concepts not yet erased at `check`."""
        return [i for i, c in enumerate(self.concepts) if check.erasure.get(c, 0.0) < self.config.erased_at]

    def trainable(self) -> list[int]:
        """The concepts to train from now on: not erased at the last check (all before the first), budget left."""
        pending = self.pending(self.checks[-1]) if self.checks else range(len(self.concepts))
        return [i for i in pending if not self.spent(i)]


class LastErasure:
    """Each concept's last measured erasure, gathered from the step infos (measured only every `check_every`
    steps), as the line the progress displays of the CLI, ComfyUI and the WebUIs show ("" before the first)."""

    def __init__(self) -> None:
        self.measured: dict[str, float] = {}

    def update(self, info: dict[str, Any]) -> str:
        self.measured.update(info.get(INFO_ERASURE, {}))
        return format_erasure(self.measured)


def format_erasure(measured: dict[str, float], erased_at: float | None = None) -> str:
    """The last measured erasure of each concept as one short line for progress bars ("apple 0.83 done, car 0.41")."""
    return ", ".join(
        f"{concept} {value:.2f}" + (" done" if erased_at is not None and value >= erased_at else "")
        for concept, value in measured.items()
    )
