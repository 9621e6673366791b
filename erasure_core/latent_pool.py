"""Amortised training latents: stored DDIM trajectories instead of a fresh partial sampling at every step.

The reference code makes every training latent x_t by sampling from noise with the current model and stopping at
the drawn timestep: about 50 UNet evaluations for one latent (algorithms.md §1). One trajectory run down the whole
schedule passes through a latent at every training timestep, so the pool samples a few trajectories per prompt, hands
out (trajectory, timestep) pairs from them, and re-samples them a fixed number of times per run (`pool_refreshes`).
By default the current model samples them, so that the latents follow the edit as the reference's do. With
`pool_model="original"` the unedited model samples them instead and the pool keeps its unconditional and conditional
predictions along the way: those are exactly the original model's predictions that ESD's and EAP's targets need at
the pooled latents, so the targets cost no UNet evaluation. Trajectories are sampled lazily, on a prompt's first use
in a period, so prompts that are never drawn cost nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

import torch

from .backends.base import Conditioning
from .sampling import Predict, TimestepDraw, ddim_sample, ddim_trajectory

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
    cond: Conditioning  # the prompt they were sampled with
    latents: dict[int, torch.Tensor]  # timestep -> [len(slots), C, H, W]
    predictions: dict[int, tuple[torch.Tensor, torch.Tensor]] | None = None  # timestep -> (eps_uncond, eps_cond)


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
        keep_predictions: bool = False,
    ) -> None:
        self.predict = predict
        self.noise = noise
        self.uncond = uncond
        self.guidance = guidance
        self.path = tuple(path)
        self.alphas_cumprod = alphas_cumprod
        self.size = trajectories
        self.generator = generator
        self.keep_predictions = keep_predictions
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
        return self.visit(prompts, draw)[0]

    def visit(
        self, prompts: Sequence[PoolPrompt], draw: TimestepDraw
    ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor] | None]]:
        """`latents`, plus per prompt the sampling model's (eps_uncond, eps_cond) there: kept with
        `keep_predictions` and only for a prompt whose conditioning is the one its key's trajectories were sampled
        with (a prompt that shares another's trajectories gets None)."""
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
        rows = [e.slots.index(slot) for e in entries]
        x = torch.cat([e.latents[timestep][row][None] for e, row in zip(entries, rows, strict=True)])
        predictions = []
        for prompt, entry, row in zip(prompts, entries, rows, strict=True):
            if entry.predictions is None or not _same(prompt.cond, entry.cond):
                predictions.append(None)
                continue
            eps_uncond, eps_cond = entry.predictions[timestep]
            predictions.append((eps_uncond[row][None], eps_cond[row][None]))
        return x, predictions

    def prefetch(self, prompts: Sequence[PoolPrompt]) -> None:
        """Sample every prompt not yet in the pool in one batched run (a GPU runs a batch for the price of one)."""
        if self.period < 0:
            self.refresh()
        missing: dict[Hashable, PoolPrompt] = {}
        for prompt in prompts:  # the first prompt asking for a key in a period decides what its trajectories show
            if prompt.key not in self._entries:
                missing.setdefault(prompt.key, prompt)
        if missing:
            self._sample(list(missing.values()))

    def _sample(self, missing: list[PoolPrompt]) -> None:
        """Sample the missing keys' trajectories in one batched run with the pool's model."""
        conds, starts, plan = [], [], []
        for prompt in missing:
            if prompt.shared:
                slots = list(range(self.size))
            else:
                slots = [self._next_slot % self.size]
                self._next_slot += 1
            plan.append((prompt, slots))
            conds.append(prompt.cond.detach().repeat(len(slots)))
            starts.append(self._bank[slots])
        args = (self.predict, torch.cat(starts), Conditioning.cat(conds), self.uncond, self.guidance, self.path)
        if self.keep_predictions:
            visits = ddim_trajectory(*args, self.alphas_cumprod)
            latents = {t: v.x for t, v in visits.items()}
            predictions = {t: (v.eps_uncond, v.eps_cond) for t, v in visits.items()}
        else:
            latents = ddim_sample(*args, self.alphas_cumprod, record=self.path)[1]
            predictions = None
        offset = 0
        for prompt, slots in plan:
            part = slice(offset, offset + len(slots))
            self._entries[prompt.key] = _Trajectories(
                slots,
                prompt.cond.detach(),
                {t: x[part] for t, x in latents.items()},
                None if predictions is None else {t: (u[part], c[part]) for t, (u, c) in predictions.items()},
            )
            offset += len(slots)


def _same(a: Conditioning, b: Conditioning) -> bool:
    return torch.equal(a.context, b.context) and (a.pooled is None or torch.equal(a.pooled, b.pooled))
