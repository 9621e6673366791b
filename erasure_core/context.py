"""What a method's training step works with: predictions with the edit on or off, latents, draws and updates.

Methods stay short because everything they share lives here: one sampler, one timestep draw, one preservation
term for the user's keep-list, and one place that checks a loss before it touches the weights.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .backends.base import Backend, Conditioning
from .config import EraseConfig
from .errors import NumericalError
from .lora.adapter import edit_disabled
from .sampling import TimestepDraw, ddim_sample, draw_timestep, loss_weight


@dataclass
class Prompts:
    """Encodings made once before training."""

    erased: list[str]
    erased_conds: Conditioning
    uncond: Conditioning
    anchor: Conditioning
    keep: list[str] = field(default_factory=list)
    keep_conds: Conditioning | None = None


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
        self.rng = random.Random(config.seed)
        self.optimizer: torch.optim.Optimizer | None = None
        self.unet_evals = 0  # UNet evaluations per sample: forwards, plus one per sample a backward passes through
        self._pending_backward = 0
        self.last_latent: torch.Tensor | None = None

    def set_trainable(self, params: list[torch.nn.Parameter]) -> None:
        """The LoRA weights to train, known once the layers are injected (after the method's set-up)."""
        self.optimizer = torch.optim.Adam(params, lr=self.config.lr)

    # -- predictions ------------------------------------------------------------------------------------------
    def _forward(self, x: torch.Tensor, timesteps: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        self.unet_evals += x.shape[0]
        if torch.is_grad_enabled():
            self._pending_backward += x.shape[0]
        return self.backend.predict_noise(x, timesteps, cond)

    def predict(self, x: torch.Tensor, t: int, cond: Conditioning, *, edited: bool) -> torch.Tensor:
        """Noise prediction of the edited model (LoRA on) or of the original model (the same UNet, LoRA off)."""
        timesteps = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
        if edited:
            return self._forward(x, timesteps, cond)
        with edit_disabled(self.backend.unet):
            return self._forward(x, timesteps, cond)

    # -- samples ----------------------------------------------------------------------------------------------
    def draw(self) -> TimestepDraw:
        c = self.config
        return draw_timestep(self.generator, self.backend.alphas_cumprod, c.ddim_steps, c.reference_timestep_offset)

    def noise(self, n: int = 1) -> torch.Tensor:
        z = torch.randn((n, *self.latent_shape), generator=self.generator)
        return z.to(self.backend.device)

    def sample_latents(self, cond: Conditioning, z: torch.Tensor, draw: TimestepDraw) -> torch.Tensor:
        """x_t from the *current* model (edit on) with guidance `sample_guidance`, one trajectory per prompt."""
        cond = cond.detach()
        x, _ = ddim_sample(
            self._forward,
            z,
            cond,
            self.prompts.uncond,
            self.config.sample_guidance,
            draw.path,
            self.backend.alphas_cumprod,
        )
        self.last_latent = x[0].detach()
        return x

    def weight(self, draw: TimestepDraw) -> float:
        return loss_weight(draw, self.config.loss_space)

    def pick_erased(self) -> int:
        """One erased concept per step, uniformly (ref §1: several concepts share one run this way)."""
        return self.rng.randrange(len(self.prompts.erased))

    def eta(self, index: int) -> float:
        """Negative-guidance strength for erased concept `index`: the config's eta times the concept's weight."""
        return self.config.negative_guidance * self.config.erase_weights[index]

    # -- losses and updates -----------------------------------------------------------------------------------
    def keep_loss(self, x: torch.Tensor, draw: TimestepDraw) -> torch.Tensor | float:
        """Preservation of one of the user's kept concepts on the step's latent (ESD-preserve form, ref §1)."""
        p = self.prompts
        if p.keep_conds is None or self.config.keep_weight == 0:
            return 0.0
        index = self.rng.randrange(len(p.keep))
        cond = p.keep_conds.select(index)
        with torch.no_grad():
            frozen = self.predict(x, draw.t, cond, edited=False)
        edited = self.predict(x, draw.t, cond, edited=True)
        weight = self.config.keep_weight * self.config.keep_weights[index]
        return weight * self.weight(draw) * F.mse_loss(edited, frozen)

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
        return float(loss.detach())

    def update_search(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> float:
        """One step of a concept search (EAP/AGE logits); the LoRA weights' stray gradients are discarded."""
        self.check_finite(loss, "concept-search")
        optimizer.zero_grad(set_to_none=True)
        self._backward(loss)
        optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())

    def _backward(self, loss: torch.Tensor) -> None:
        loss.backward()
        self.unet_evals += self._pending_backward
        self._pending_backward = 0
