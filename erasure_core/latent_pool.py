"""Amortised training latents: stored DDIM trajectories instead of a fresh partial sampling at every step.

The reference code makes every training latent x_t by sampling from noise with the current model and stopping at
the drawn timestep: about 50 UNet evaluations for one latent (algorithms.md §1). One trajectory run down the whole
schedule passes through a latent at every training timestep, so the pool samples a few trajectories per prompt, hands
out (trajectory, timestep) pairs from them, and re-samples them from the current model a fixed number of times per
run (`pool_refreshes`), so that the latents follow the edit as the reference's do. Trajectories are sampled lazily,
on a prompt's first use in a period, so prompts that are never drawn cost nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

import torch

from .backends.base import Conditioning
from .sampling import Predict, TimestepDraw, ddim_sample

Noise = Callable[[int], torch.Tensor]


@dataclass(frozen=True)
class PoolPrompt:
    """A prompt to take latents for. `shared` prompts (the erased concepts) get a trajectory from every start noise;
    the others (one of many candidate words) get one, so that a word drawn once costs one trajectory."""

    key: Hashable
    cond: Conditioning
    shared: bool = True


@dataclass
class _Trajectories:
    slots: list[int]  # the noise slot each trajectory started from
    latents: dict[int, torch.Tensor]  # timestep -> [len(slots), C, H, W]


class LatentPool:
    """Trajectories per prompt key for the current period, sharing one bank of start noises across prompts.

    Prompts drawn together (EAP's erased and adversarial concepts) get latents from the same start noise z_T,
    as in the reference, because every key's trajectories start from slots of the same noise bank.
    """

    def __init__(
        self,
        predict: Predict,
        noise: Noise,
        uncond: Conditioning,
        guidance: float,
        path: Sequence[int],
        alphas_cumprod: torch.Tensor,
        trajectories: int,
        generator: torch.Generator,
    ) -> None:
        self.predict = predict
        self.noise = noise
        self.uncond = uncond
        self.guidance = guidance
        self.path = tuple(path)
        self.alphas_cumprod = alphas_cumprod
        self.size = trajectories
        self.generator = generator
        self.period = -1
        self._bank = torch.empty(0)
        self._entries: dict[Hashable, _Trajectories] = {}
        self._next_slot = 0

    def refresh(self) -> None:
        """Start a new period: forget every trajectory and draw a new bank of start noises."""
        self.period += 1
        self._bank = self.noise(self.size)
        self._entries.clear()
        self._next_slot = 0

    def latents(self, prompts: Sequence[PoolPrompt], draw: TimestepDraw) -> torch.Tensor:
        """One latent per prompt at the draw's timestep, all from the same start noise."""
        self.prefetch(prompts)
        entries = [self._entries[p.key] for p in prompts]
        slots = set(entries[0].slots)
        for entry in entries[1:]:
            slots &= set(entry.slots)
        if not slots:  # cannot happen: a secondary key's slot is always among the primary's
            raise RuntimeError("latent pool: prompts drawn together share no start noise")
        ordered = sorted(slots)
        slot = ordered[int(torch.randint(len(ordered), (1,), generator=self.generator))]
        timestep = draw.path[-1]
        return torch.cat([e.latents[timestep][e.slots.index(slot)][None] for e in entries])

    def prefetch(self, prompts: Sequence[PoolPrompt]) -> None:
        """Sample every prompt not yet in the pool in one batched run (a GPU runs a batch for the price of one)."""
        if self.period < 0:
            self.refresh()
        missing = [p for p in prompts if p.key not in self._entries]
        if missing:
            self._sample(missing)

    def _sample(self, missing: list[PoolPrompt]) -> None:
        """Sample the missing keys' trajectories in one batched run with the current model."""
        conds, starts, plan = [], [], []
        for prompt in missing:
            if prompt.shared:
                slots = list(range(self.size))
            else:
                slots = [self._next_slot % self.size]
                self._next_slot += 1
            plan.append((prompt.key, slots))
            conds.append(prompt.cond.detach().repeat(len(slots)))
            starts.append(self._bank[slots])
        _, recorded = ddim_sample(
            self.predict,
            torch.cat(starts),
            Conditioning.cat(conds),
            self.uncond,
            self.guidance,
            self.path,
            self.alphas_cumprod,
            record=self.path,
        )
        offset = 0
        for key, slots in plan:
            n = len(slots)
            self._entries[key] = _Trajectories(slots, {t: x[offset : offset + n] for t, x in recorded.items()})
            offset += n
