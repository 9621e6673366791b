"""Training latents: the DDIM schedule, the per-step timestep draw and partial DDIM sampling with guidance.

ESD, EAP and AGE train on latents x_t produced by running the *current* model from pure noise with the erased
prompt and classifier-free guidance 3, stopped at a uniformly drawn DDIM index (algorithms.md §1). The reference
code's sampler stops about two DDIM steps late and starts one step low; `TimestepDraw.reference` reproduces that.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from .backends.base import Conditioning
from .cancel import checkpoint

Predict = Callable[[torch.Tensor, torch.Tensor, Conditioning], torch.Tensor]


def ddim_timesteps(num_train_timesteps: int, steps: int) -> list[int]:
    """Ascending DDIM timesteps with SD's offset of 1: 1, 21, ..., 981 for 1000 / 50 (ref §1 step 1)."""
    stride = num_train_timesteps // steps
    return [i * stride + 1 for i in range(steps)]


@dataclass(frozen=True)
class TimestepDraw:
    """One training timestep: the sampling path that makes x_t, and the t and alpha-bar the loss uses.

    Attributes:
        index: the drawn DDIM index t_idx.
        path: DDIM timesteps visited while sampling, from the start down to the latent's own timestep
            (a final 0 means "denoised fully to x0", the reference's behaviour for t_idx < 2).
        t: the integer timestep given to the UNet in the loss.
        alpha_bar: alpha-bar used to convert to x0-predictions (ref §2.3 step 4).
    """

    index: int
    path: tuple[int, ...]
    t: int
    alpha_bar: float


def draw_timestep(
    generator: torch.Generator, alphas_cumprod: torch.Tensor, steps: int, reference_offset: bool
) -> TimestepDraw:
    """Draw t_idx uniformly from the `steps`-step DDIM schedule (ref §1 steps 1-4).

    Clean version (default): sample from the top timestep down to index t_idx and train at that same timestep.
    Reference version: sampling starts one DDIM step lower (t_start = -1), stops two indices past t_idx, and the
    loss uses a DDPM timestep drawn in [stride * t_idx, stride * (t_idx + 1)), so the latent is less noisy than t.
    """
    index = int(torch.randint(steps, (1,), generator=generator))
    return timestep_at(index, alphas_cumprod, steps, reference_offset, generator)


def timestep_at(
    index: int,
    alphas_cumprod: torch.Tensor,
    steps: int,
    reference_offset: bool,
    generator: torch.Generator,
) -> TimestepDraw:
    """The draw for DDIM index `index` (see `draw_timestep`); the reference version also draws its DDPM timestep."""
    n_train = alphas_cumprod.shape[0]
    schedule = ddim_timesteps(n_train, steps)
    if not reference_offset:
        t = schedule[index]
        path = tuple(reversed(schedule[index:]))
        return TimestepDraw(index, path, t, float(alphas_cumprod[t]))
    stride = n_train // steps
    t = int(torch.randint(stride * index, stride * (index + 1), (1,), generator=generator))
    start = schedule[:-1]  # the reference drops the last DDIM timestep and starts from pure noise at 961
    stop = index - 2
    path = tuple(reversed(start[stop:])) if stop >= 0 else (*reversed(start), 0)
    return TimestepDraw(index, path, t, float(alphas_cumprod[schedule[index]]))


def full_path(alphas_cumprod: torch.Tensor, steps: int, reference_offset: bool) -> tuple[int, ...]:
    """The whole sampling path: every draw's path is a prefix of it, so one trajectory serves every timestep."""
    return timestep_at(0, alphas_cumprod, steps, reference_offset, torch.Generator().manual_seed(0)).path


def loss_weight(draw: TimestepDraw, loss_space: str) -> float:
    """Factor that turns a noise-space MSE into the x0-space MSE of EAP/AGE: (1 - a) / a (algorithms.md §0 fact 1).

    All our targets are affine in epsilon on one latent, so x0-space MSE = this weight times epsilon-space MSE.
    """
    if loss_space == "x0":
        return (1.0 - draw.alpha_bar) / draw.alpha_bar
    return 1.0


def guided_halves(
    predict: Predict, x: torch.Tensor, t: int, cond: Conditioning, uncond: Conditioning
) -> tuple[torch.Tensor, torch.Tensor]:
    """Unconditional and conditional predictions at (x, t), in one batched call."""
    batch = x.shape[0]
    timesteps = torch.full((2 * batch,), t, device=x.device, dtype=torch.long)
    both = predict(torch.cat([x, x]), timesteps, Conditioning.cat([uncond.repeat(batch), cond]))
    eps_uncond, eps_cond = both.chunk(2)
    return eps_uncond, eps_cond


def guided_noise(
    predict: Predict, x: torch.Tensor, t: int, cond: Conditioning, uncond: Conditioning, guidance: float
) -> torch.Tensor:
    """Classifier-free guidance, conditional and unconditional halves in one batched call."""
    eps_uncond, eps_cond = guided_halves(predict, x, t, cond, uncond)
    return eps_uncond + guidance * (eps_cond - eps_uncond)


def ddim_step(x: torch.Tensor, eps: torch.Tensor, t: int, t_prev: int, alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """One deterministic DDIM step (eta 0) from timestep t to t_prev; t_prev == 0 returns the x0-prediction."""
    a_t = alphas_cumprod[t]
    a_prev = alphas_cumprod[t_prev] if t_prev > 0 else alphas_cumprod[0]
    x0 = (x - (1 - a_t).sqrt() * eps) / a_t.sqrt()
    return x0 if t_prev == 0 else a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps


@torch.no_grad()
def ddim_sample(
    predict: Predict,
    z: torch.Tensor,
    cond: Conditioning,
    uncond: Conditioning,
    guidance: float,
    path: Sequence[int],
    alphas_cumprod: torch.Tensor,
    record: Sequence[int] = (),
) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
    """Deterministic DDIM (eta 0) from `z` at `path[0]` down to `path[-1]`; `path[-1] == 0` means fully to x0.

    Returns the final latent and the latents reached at the timesteps listed in `record` (the audit's samples).
    """
    x = z
    recorded: dict[int, torch.Tensor] = {path[0]: x} if path[0] in record else {}
    for t, t_prev in itertools.pairwise(path):
        checkpoint("sample")
        x = ddim_step(x, guided_noise(predict, x, t, cond, uncond, guidance), t, t_prev, alphas_cumprod)
        if t_prev in record:
            recorded[t_prev] = x
    return x, recorded


@dataclass(frozen=True)
class Visit:
    """A trajectory's latents at one timestep, with the model's unconditional and conditional predictions there."""

    x: torch.Tensor
    eps_uncond: torch.Tensor
    eps_cond: torch.Tensor


@torch.no_grad()
def ddim_trajectory(
    predict: Predict,
    z: torch.Tensor,
    cond: Conditioning,
    uncond: Conditioning,
    guidance: float,
    path: Sequence[int],
    alphas_cumprod: torch.Tensor,
) -> dict[int, Visit]:
    """Guided DDIM down `path`, keeping every timestep's latents and both predictions made there (one more guided
    evaluation than `ddim_sample`, at the last timestep, so that every visited latent has its predictions)."""
    x, visits = z, {}
    for i, t in enumerate(path):
        checkpoint("sample")
        eps_uncond, eps_cond = guided_halves(predict, x, t, cond, uncond)
        visits[t] = Visit(x, eps_uncond, eps_cond)
        if i + 1 < len(path):
            x = ddim_step(x, eps_uncond + guidance * (eps_cond - eps_uncond), t, path[i + 1], alphas_cumprod)
    return visits
