"""The robust mode: erasure trained against its own recovery attack (AdvUnlearn, Zhang et al., 2024, in miniature).

Recovery attacks bring erased concepts back with a soft prompt optimised on the erased model (`attack.py`). Here a
soft prompt per erased concept is kept adversarial as training goes: before each parameter step it takes one Adam
step towards making the edited model predict, at the step's latents, what the original model predicts for the
concept (the attack's goal); the parameter step then erases that prompt too, pulling the edited model's prediction
for it to the same target as the concept's own. The soft prompt is `robust_tokens` positions of the concept's
cross-attention context, as the attack audit's soft attack optimises them.

AdvUnlearn attacks discrete prompt embeddings and trains the text encoder; our LoRA lives in the UNet, so the
adversary works where the UNet reads text, on the context itself, a stronger attacker.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from .backends.base import Conditioning

if TYPE_CHECKING:
    from .context import Draws, TrainingContext


class SoftAdversary:
    """One soft prompt per erased concept, each with its own Adam: the concept's context with `tokens` positions after
    the first set free (the attack audit's soft attack optimises the same)."""

    def __init__(self, erased: Conditioning, tokens: int, lr: float) -> None:
        self.dtype = erased.context.dtype
        self.base = erased.context.detach().float()
        self.pooled, self.lengths = erased.pooled, erased.lengths
        self.positions = slice(1, 1 + max(1, min(tokens, self.base.shape[1] - 1)))
        self.free = [self.base[i : i + 1, self.positions].clone().requires_grad_(True) for i in range(len(erased))]
        scale = float(self.base.std())
        self.optimizers = [torch.optim.Adam([f], lr=lr * scale) for f in self.free]

    def prompt(self, index: int) -> Conditioning:
        """Erased concept `index`'s soft prompt (differentiable in it)."""
        base = self.base[index : index + 1]
        p = self.positions
        context = torch.cat([base[:, : p.start], self.free[index], base[:, p.stop :]], dim=1).to(self.dtype)
        select = slice(index, index + 1)
        return Conditioning(
            context,
            None if self.pooled is None else self.pooled[select],
            None if self.lengths is None else self.lengths[select],
        )

    def attack(
        self, ctx: TrainingContext, index: int, x: torch.Tensor, draws: Draws, eps_erased: torch.Tensor
    ) -> Conditioning:
        """One attack step at the parameter step's latents; returns the updated prompt, detached."""
        prompt = self.prompt(index)
        gap = ctx.mse(ctx.predict(x, draws, prompt, edited=True), eps_erased, draws)
        ctx.update_search(gap, self.optimizers[index])
        return self.prompt(index).detach()
