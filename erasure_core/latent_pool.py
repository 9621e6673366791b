"""Amortised training latents: stored DDIM trajectories instead of a fresh partial sampling at every step.

The reference code makes every training latent x_t by sampling from noise with the current model and stopping at
the drawn timestep: about 50 UNet evaluations for one latent (algorithms.md §1). One trajectory run down the whole
schedule passes through a latent at every training timestep, so the pool samples a few trajectories per prompt, hands
out (trajectory, timestep) pairs from them, and re-samples them a fixed number of times per run (`pool_refreshes`).
By default the current model samples them, so that the latents follow the edit as the reference's do.

ESD's and EAP's targets need the original model's unconditional and conditional predictions at each latent. The
original model does not change during a run and a pooled latent is handed out many times per period, so the pool
keeps those predictions per latent: computed on a latent's first visit (`original`), or taken from the sampling
itself where the sampling model predicts exactly what the original does, so that they cost no evaluation at all:
with `pool_model="original"`, and in the first period of a fresh LoRA, whose trajectories are sampled before its
first update, while the edit is still zero (`unedited`).
Trajectories are sampled lazily, on a prompt's first use in a period, so prompts that are never drawn cost nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

import torch

from .backends.base import Conditioning
from .sampling import Predict, TimestepDraw, ddim_sample, ddim_trajectory, guided_halves

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
    # (timestep, row) -> the original model's (eps_uncond, eps_cond) there, each [1, C, H, W]
    predictions: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]]


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
        original: Predict | None = None,
        unedited: Callable[[], bool] | None = None,
    ) -> None:
        self.predict = predict
        self.noise = noise
        self.uncond = uncond
        self.guidance = guidance
        self.path = tuple(path)
        self.alphas_cumprod = alphas_cumprod
        self.size = trajectories
        self.generator = generator
        self.keep_predictions = keep_predictions  # `predict` is the original model: keep what it predicts
        self.original = original  # the original model, to predict at a latent on its first visit (None: never)
        self.unedited = unedited  # whether `predict` still equals the original model (then its predictions are kept)
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
        self, prompts: Sequence[PoolPrompt], draw: TimestepDraw, predictions: bool = True
    ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor] | None]]:
        """`latents`, plus per prompt the original model's (eps_uncond, eps_cond) there, when `predictions` asks
        for them: kept from sampling with `keep_predictions`, else computed on the latent's first visit with
        `original` and kept for the period. None for a prompt whose conditioning is not the one its key's
        trajectories were sampled with (a prompt that shares another's trajectories), for a draw that trains at
        another timestep than its latent's, and where neither source applies."""
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
        wanted = predictions and draw.t == timestep  # the reference offset trains at another timestep
        known = [
            self._predictions(entry, timestep, row) if wanted and _same(prompt.cond, entry.cond) else None
            for prompt, entry, row in zip(prompts, entries, rows, strict=True)
        ]
        return x, known

    def _predictions(self, entry: _Trajectories, timestep: int, row: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The original model's predictions at one stored latent: kept, or made now and kept (one batched call)."""
        if (timestep, row) not in entry.predictions and self.original is not None:
            with torch.no_grad():
                x = entry.latents[timestep][row][None]
                entry.predictions[timestep, row] = guided_halves(self.original, x, timestep, entry.cond, self.uncond)
        return entry.predictions.get((timestep, row))

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
        keep = self.keep_predictions or (self.original is not None and self.unedited is not None and self.unedited())
        if keep:
            visits = ddim_trajectory(*args, self.alphas_cumprod)
            latents = {t: v.x for t, v in visits.items()}
        else:
            latents = ddim_sample(*args, self.alphas_cumprod, record=self.path)[1]
        offset = 0
        for prompt, slots in plan:
            part = slice(offset, offset + len(slots))
            kept = {}
            if keep:
                kept = {
                    (t, row): (v.eps_uncond[offset + row][None], v.eps_cond[offset + row][None])
                    for t, v in visits.items()
                    for row in range(len(slots))
                }
            self._entries[prompt.key] = _Trajectories(
                slots, prompt.cond.detach(), {t: x[part] for t, x in latents.items()}, kept
            )
            offset += len(slots)


def _same(a: Conditioning, b: Conditioning) -> bool:
    return torch.equal(a.context, b.context) and (a.pooled is None or torch.equal(a.pooled, b.pooled))
