"""What a method's training step works with: predictions with the edit on or off, latents, draws and updates.

Methods stay short because everything they share lives here: one sampler, one timestep draw, one preservation
term for the user's keep-list, and one place that checks a loss before it touches the weights.
"""

from __future__ import annotations

import math
import random
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field

import torch

from .backends.base import Backend, Conditioning, supports_cuda_graphs
from .config import EraseConfig
from .cuda_graphs import GraphedPredict
from .errors import NumericalError
from .latent_pool import LatentPool, PoolPrompt
from .lora.adapter import edit_disabled
from .robust import SoftAdversary
from .sampling import TimestepDraw, ddim_sample, draw_timestep, full_path, loss_weight


@dataclass
class Prompts:
    """Encodings made once before training."""

    erased: list[str]
    erased_conds: Conditioning
    uncond: Conditioning
    anchor: Conditioning
    keep: list[str] = field(default_factory=list)  # the user's, then the guarded neighbours
    keep_conds: Conditioning | None = None
    keep_weights: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class Draws:
    """A step's training timesteps, one per latent (`batch_size` of them).

    Tensors of a step hold `batch_size` rows per prompt, prompt after prompt, in draw order within a prompt.
    """

    items: tuple[TimestepDraw, ...]

    def __len__(self) -> int:
        return len(self.items)

    def per_row(self, values: Sequence[float], rows: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        k = len(self.items)
        if rows % k:
            raise ValueError(f"{rows} rows do not split into prompts of {k} latents")
        return torch.tensor(values, device=device, dtype=dtype).repeat(rows // k)


@dataclass
class Latents:
    """A step's training latents, and per prompt the original model's (eps_uncond, eps_cond) at that prompt's rows
    where the latent pool has them (see `LatentPool.visit`), else None."""

    x: torch.Tensor
    original: list[tuple[torch.Tensor, torch.Tensor] | None]


class Turns:
    """Indices taken in turns: each once per round, every round in a new shuffled order."""

    def __init__(self, rng: random.Random, indices: Iterable[int]) -> None:
        self._rng = rng
        self._members = list(indices)
        self._round: list[int] = []

    def next(self) -> int:
        if not self._round:
            self._round = list(self._members)
            self._rng.shuffle(self._round)
        return self._round.pop()

    def restrict(self, indices: Iterable[int]) -> None:
        """Take only these from now on; the current round drops the others."""
        self._members = list(indices)
        self._round = [i for i in self._round if i in self._members]


class TrainingContext:
    """Shared machinery of one run. Counts UNet evaluations (one per sample per forward, one per backward)."""

    def __init__(
        self,
        backend: Backend,
        config: EraseConfig,
        prompts: Prompts,
        latent_shape: tuple[int, int, int],
    ) -> None:
        self.backend = backend
        self.config = config
        self.prompts = prompts
        self.latent_shape = latent_shape
        self.generator = torch.Generator().manual_seed(config.seed)
        # Separate streams: the order erased concepts are trained in, and which kept concept a step preserves.
        self._erased_turns = Turns(random.Random(config.seed), range(len(prompts.erased)))
        self._keep_turns = Turns(random.Random(config.seed + 1), range(len(prompts.keep)))
        self.current = 0  # the erased concept of this step
        self._optimizers: list[torch.optim.Optimizer] = []
        self.unet_evals = 0  # UNet evaluations per sample: forwards, plus one per sample a backward passes through
        self._pending_backward = 0
        self.last_latent: torch.Tensor | None = None
        self._unedited = False  # the edit is still zero: a fresh LoRA before its first update (`set_trainable`)
        self._graphed: GraphedPredict | None = None
        if config.cuda_graphs and backend.device.type == "cuda" and supports_cuda_graphs(backend):
            self._graphed = GraphedPredict(backend.predict_noise)
        self._ddim_steps = config.resolved_ddim_steps()
        self._fresh_steps = config.resolved_pool_fresh_steps()
        self.pool: LatentPool | None = None
        refreshes = config.resolved_pool_refreshes()
        if refreshes > 0:
            original = config.pool_model == "original"
            self.pool = LatentPool(
                self._forward_original if original else self._forward,
                self.noise,
                prompts.uncond,
                config.sample_guidance,
                full_path(backend.alphas_cumprod, self._ddim_steps, config.reference_timestep_offset),
                backend.alphas_cumprod,
                config.pool_trajectories,
                self.generator,
                keep_predictions=original,
                # ESD's and EAP's targets need them only with the unconditional anchor (AGE: the erased half).
                original=self._forward_original if not original and prompts.anchor is prompts.uncond else None,
                unedited=lambda: self._unedited,
            )
        self._refresh_every = math.ceil(config.total_steps / max(1, refreshes))
        self.adversary = (
            SoftAdversary(prompts.erased_conds, config.robust_tokens, config.robust_lr) if config.robust else None
        )

    def begin_step(self, step: int) -> None:
        """Called before training step `step` (1-based): starts a new latent-pool period when one is due."""
        if self.pool is not None and (step - 1) % self._refresh_every == 0:
            self.pool.refresh()

    def set_trainable(self, params: list[torch.nn.Parameter], fresh: bool) -> None:
        """The LoRA weights to train, known once the layers are injected (after the method's set-up). `fresh`: they
        were just initialised with a zero up-projection, so the edited model predicts exactly what the original
        does until the first update (a resumed LoRA does not)."""
        states = len(self.prompts.erased) if self.config.adam_per_concept else 1
        self._optimizers = [torch.optim.Adam(params, lr=self.config.lr) for _ in range(states)]
        self._unedited = fresh

    @property
    def optimizers(self) -> list[torch.optim.Optimizer]:
        """Every Adam of the run (one per erased concept with `adam_per_concept`), to save or restore their state."""
        return self._optimizers

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        """The LoRA's Adam for this step's erased concept (`adam_per_concept`), or the one shared by all."""
        return self._optimizers[self.current if len(self._optimizers) > 1 else 0]

    # -- predictions ------------------------------------------------------------------------------------------
    def _forward(
        self, x: torch.Tensor, timesteps: torch.Tensor, cond: Conditioning, edited: bool = True
    ) -> torch.Tensor:
        self.unet_evals += x.shape[0]
        if torch.is_grad_enabled():
            self._pending_backward += x.shape[0]
        elif self._graphed is not None:
            return self._graphed(x, timesteps, cond, edited)
        return self.backend.predict_noise(x, timesteps, cond)

    def _forward_original(self, x: torch.Tensor, timesteps: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        with edit_disabled(self.backend.unet):
            return self._forward(x, timesteps, cond, edited=False)

    def predict(self, x: torch.Tensor, draws: Draws, cond: Conditioning, *, edited: bool) -> torch.Tensor:
        """Noise prediction of the edited model (LoRA on) or of the original model (the same UNet, LoRA off).

        `cond` holds one prompt per row of `x`, or one per prompt (each then serves its `len(draws)` rows).
        """
        timesteps = draws.per_row([d.t for d in draws.items], x.shape[0], x.device, torch.long)
        if len(cond) != x.shape[0]:
            cond = cond.repeat_each(len(draws))
        return self._forward(x, timesteps, cond) if edited else self._forward_original(x, timesteps, cond)

    # -- samples ----------------------------------------------------------------------------------------------
    def draw(self) -> Draws:
        """`batch_size` timesteps, each drawn uniformly from the DDIM schedule (ref §1)."""
        c = self.config
        return Draws(
            tuple(
                draw_timestep(
                    self.generator, self.backend.alphas_cumprod, self._ddim_steps, c.reference_timestep_offset
                )
                for _ in range(c.batch_size)
            )
        )

    def noise(self, n: int = 1) -> torch.Tensor:
        z = torch.randn((n, *self.latent_shape), generator=self.generator)
        return z.to(self.backend.device)

    def latents(self, prompts: Sequence[PoolPrompt], draws: Draws) -> torch.Tensor:
        """x_t for each prompt at each drawn timestep, made by the current model (by the original one from a pool
        with `pool_model="original"`); prompts drawn at the same timestep share their start noise z_T. Rows: prompt
        after prompt, `len(draws)` each.

        From the latent pool by default; by a fresh partial sampling per latent, as the reference does, when the
        pool is off (`pool_refreshes=0`), when the draw's sampling is short (`pool_fresh_steps`: the noisiest
        timesteps, which carry the x0-space loss's largest weights and cost little to sample), or when a prompt has
        no key (a soft mixture that is new at every step).
        """
        return self.latents_with_predictions(prompts, draws, predictions=False).x

    def latents_with_predictions(
        self, prompts: Sequence[PoolPrompt], draws: Draws, predictions: bool = True
    ) -> Latents:
        """`latents`, plus the original model's (eps_uncond, eps_cond) there for each prompt the pool has or can
        make them for (`LatentPool.visit`): a pooled latent's are computed once per period, not once per visit."""
        fresh = self.pool is None or any(p.key is None for p in prompts)
        cond = Conditioning.cat([p.cond for p in prompts])
        per_draw, known = [], []
        for draw in draws.items:
            if fresh:
                per_draw.append(self.sample_latents(cond, self.noise().repeat(len(prompts), 1, 1, 1), draw))
                known.append([None] * len(prompts))
            elif self._sample_fresh(draw):  # as the pool would: prompts that share a key share the latent
                per_draw.append(self._sample_fresh_shared(prompts, draw))
                known.append([None] * len(prompts))
            else:
                x, original = self.pool.visit(prompts, draw, predictions)
                per_draw.append(x)
                known.append(original)
        x = torch.stack(per_draw, dim=1).flatten(0, 1)  # [draw, prompt] -> prompt-major rows
        self.last_latent = x[0].detach()
        original = []
        for i in range(len(prompts)):
            rows = [k[i] for k in known]
            complete = all(r is not None for r in rows)
            original.append(tuple(torch.cat(parts) for parts in zip(*rows, strict=True)) if complete else None)
        return Latents(x, original)

    def pooled_anchor_and_erased(self, sampled: Latents) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The original model's (anchor, erased) predictions at the first prompt's latents, when the pool has them:
        its conditional half is the erased prompt's, its unconditional half serves as the anchor's when the anchor
        is the unconditional prompt (the same object then, see `trainer._encode_prompts`)."""
        known = sampled.original[0]
        return known if known is not None and self.prompts.anchor is self.prompts.uncond else None

    def _sample_fresh_shared(self, prompts: Sequence[PoolPrompt], draw: TimestepDraw) -> torch.Tensor:
        """One fresh latent per pool key, sampled with the first prompt of that key (as the pool's trajectories)."""
        first: dict[Hashable, PoolPrompt] = {}
        for p in prompts:
            first.setdefault(p.key, p)
        z = self.noise().repeat(len(first), 1, 1, 1)
        x = self.sample_latents(Conditioning.cat([p.cond for p in first.values()]), z, draw)
        row = {key: i for i, key in enumerate(first)}
        return x[[row[p.key] for p in prompts]]

    def _sample_fresh(self, draw: TimestepDraw) -> bool:
        """Whether the draw's latent is sampled fresh although the pool is on (`pool_fresh_steps`; 0 = never)."""
        return self._fresh_steps > 0 and len(draw.path) - 1 <= self._fresh_steps

    def sample_latents(self, cond: Conditioning, z: torch.Tensor, draw: TimestepDraw) -> torch.Tensor:
        """x_t from the *current* model (edit on) with guidance `sample_guidance`, one trajectory per prompt."""
        return ddim_sample(
            self._forward,
            z,
            cond.detach(),
            self.prompts.uncond,
            self.config.sample_guidance,
            draw.path,
            self.backend.alphas_cumprod,
        )[0]

    def mse(self, prediction: torch.Tensor, target: torch.Tensor, draws: Draws) -> torch.Tensor:
        """Mean squared error per latent, weighted by its timestep's loss weight (x0-space: (1 - a) / a), averaged."""
        per_latent = (prediction.float() - target.float()).pow(2).flatten(1).mean(1)
        weights = [loss_weight(d, self.config.loss_space) for d in draws.items]
        return (draws.per_row(weights, per_latent.shape[0], per_latent.device, per_latent.dtype) * per_latent).mean()

    def pick_erased(self) -> int:
        """One erased concept per step (ref §1: several concepts share one run this way), taken in turns: every
        concept still being trained once per round, in a shuffled order. The reference draws one uniformly per step,
        which with five concepts in 100 steps gave one concept 11 updates and another 25."""
        self.current = self._erased_turns.next()
        return self.current

    def set_active(self, indices: Sequence[int]) -> None:
        """Train only these erased concepts from now on (the others are erased already); none left = all."""
        self._erased_turns.restrict(list(indices) or range(len(self.prompts.erased)))

    def eta(self, index: int) -> float:
        """Negative-guidance strength for erased concept `index`: the config's eta times the concept's weight."""
        return self.config.negative_guidance * self.config.erase_weights[index]

    # -- losses and updates -----------------------------------------------------------------------------------
    def keep_loss(self, x: torch.Tensor, draws: Draws) -> torch.Tensor | float:
        """Preservation of one of the user's kept concepts on the step's latents (ESD-preserve form, ref §1)."""
        p = self.prompts
        if p.keep_conds is None or self.config.keep_weight == 0:
            return 0.0
        index = self._keep_turns.next()  # every kept concept once per round, as the erased ones
        cond = p.keep_conds.select(index)
        with torch.no_grad():
            frozen = self.predict(x, draws, cond, edited=False)
        edited = self.predict(x, draws, cond, edited=True)
        weight = self.config.keep_weight * p.keep_weights[index]
        return weight * self.mse(edited, frozen, draws)

    def robust_loss(
        self, index: int, x: torch.Tensor, draws: Draws, target: torch.Tensor, eps_erased: torch.Tensor
    ) -> torch.Tensor | float:
        """The robust mode's term (`robust.py`): the concept's soft prompt, attacked one step further at these
        latents, pulled to the concept's own erasure target; 0 when the mode is off."""
        if self.adversary is None:
            return 0.0
        adversarial = self.adversary.attack(self, index, x, draws, eps_erased)
        return self.config.robust_weight * self.mse(self.predict(x, draws, adversarial, edited=True), target, draws)

    def check_finite(self, loss: torch.Tensor, what: str) -> None:
        if not torch.isfinite(loss):
            raise NumericalError(
                f"The {what} loss became {float(loss.detach())}; the run was stopped before the weights were changed. "
                "Lower the learning rate, use float32, or check the model for broken weights."
            )

    def update_params(self, loss: torch.Tensor) -> float:
        """Backward and one Adam step on the LoRA weights, after checking the loss is finite."""
        self.check_finite(loss, "training")
        self.optimizer.zero_grad(set_to_none=True)
        self._backward(loss)
        self.optimizer.step()
        self._unedited = False
        return float(loss.detach())

    def update_search(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> float:
        """One step of a concept search (EAP/AGE logits); the LoRA weights' stray gradients are discarded."""
        self.check_finite(loss, "concept-search")
        optimizer.zero_grad(set_to_none=True)
        self._backward(loss)
        optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())

    def update_jointly(
        self, loss: torch.Tensor, search_term: torch.Tensor | float, optimizer: torch.optim.Optimizer
    ) -> float:
        """One backward pass for a LoRA step down `loss` and a search step up `loss + search_term` (AGE's
        `joint_step`). Right when `search_term` has no gradient on the LoRA weights, and `loss` reaches the logits
        only through terms the search ascends as well."""
        self.check_finite(loss, "training")
        if isinstance(search_term, torch.Tensor):
            self.check_finite(search_term, "concept-search")
        self.optimizer.zero_grad(set_to_none=True)
        optimizer.zero_grad(set_to_none=True)
        self._backward(loss + search_term)
        for group in optimizer.param_groups:  # ascent
            for param in group["params"]:
                if param.grad is not None:
                    param.grad.neg_()
        self.optimizer.step()
        optimizer.step()
        self._unedited = False
        return float(loss.detach())

    def _backward(self, loss: torch.Tensor) -> None:
        loss.backward()
        self.unet_evals += self._pending_backward
        self._pending_backward = 0
