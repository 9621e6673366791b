"""The reference implementations' training loop, rebuilt only to measure what it costs next to ours.

Faithful to the authors' code as `shared/reference/algorithms.md` §1-3 describes it: fp32, batch 1, two full UNet
copies (the trainable one and a frozen one), a fresh partial DDIM sampling with guidance 3 for every latent at every
iteration (with the reference's timestep quirks), full-weight Adam at 1e-5 on every cross-attention parameter, and
for EAP/AGE one loop iteration per parameter or logit step, each computing every prediction. It is not a method
users can pick; `erasure_core` computes the same objectives from amortised latents on one UNet.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from erasure_core.adversarial import gumbel_sample
from erasure_core.backends.base import Backend, Conditioning
from erasure_core.methods.esd import negative_guidance_target
from erasure_core.sampling import TimestepDraw, ddim_sample, timestep_at

# Iterations of one erasure with the reference recipes (algorithms.md §1, §2.3, §3.1).
REFERENCE_ITERATIONS = {"esd": 1000, "eap": 2000, "age": 2000}
GUIDANCE = 3.0
DDIM_STEPS = 50
ETA = 1.0


@dataclass
class ReferenceTiming:
    iterations: int
    seconds_per_iteration: float
    unet_evals_per_iteration: float


class ReferenceLoop:
    """One reference run of `method` on the backend's model; `run(n)` times n iterations.

    The backend's UNet is trained in place (full weights, as the reference does) and restored by `close()`.
    """

    def __init__(self, backend: Backend, method: str, concept: str, candidates: list[str], seed: int = 0) -> None:
        if method not in REFERENCE_ITERATIONS:
            raise ValueError(f"no reference loop for {method!r}")
        self.backend = backend
        self.method = method
        self.generator = torch.Generator().manual_seed(seed)
        self.frozen = copy.copy(backend)
        self.frozen.unet = copy.deepcopy(backend.unet).requires_grad_(False)  # the reference's second copy
        self.params = {n: p for n, p in backend.unet.named_parameters() if "attn2" in n}  # ESD-x: every attn2 weight
        self._saved = {n: p.detach().clone() for n, p in self.params.items()}
        for p in self.params.values():
            p.requires_grad_(True)
        self.optimizer = torch.optim.Adam(self.params.values(), lr=1e-5)
        conds = backend.encode_prompts([concept, ""])
        self.erased, self.uncond = conds.select(0), conds.select(1)
        self.candidates = backend.encode_prompts(candidates) if method != "esd" else None
        n = len(candidates)
        self.logits = nn.Parameter(torch.full((n,), 1.0 / max(n, 1), device=backend.device))
        self.search_optimizer = torch.optim.Adam([self.logits], lr=1e-2)
        self.unet_evals = 0
        self.iteration = 0
        self._index = 0

    def close(self) -> None:
        """Put the original weights back and drop the frozen copy."""
        with torch.no_grad():
            for name, p in self.params.items():
                p.requires_grad_(False)
                p.copy_(self._saved[name])
        self.frozen.unet = None
        self.optimizer = self.search_optimizer = None

    def run(self, iterations: int) -> ReferenceTiming:
        """Time `iterations` iterations. Their DDIM indices are spread evenly over the schedule instead of drawn,
        so that a few iterations cost what the average of the reference's uniform draws costs."""
        device = self.backend.device
        evals = self.unet_evals
        cuda_sync(device)
        start = time.perf_counter()
        for k in range(iterations):
            self._index = int((k + 0.5) * DDIM_STEPS / iterations)
            getattr(self, f"_{self.method}_iteration")()
            self.iteration += 1
        cuda_sync(device)
        seconds = time.perf_counter() - start
        return ReferenceTiming(iterations, seconds / iterations, (self.unet_evals - evals) / iterations)

    # -- one iteration per method --------------------------------------------------------------------------
    def _esd_iteration(self) -> None:
        draw, x = self._latent(self.erased)
        with torch.no_grad():
            eps_uncond = self._predict(self.frozen, x, draw.t, self.uncond)
            eps_erased = self._predict(self.frozen, x, draw.t, self.erased)
        target = negative_guidance_target(eps_uncond, eps_erased, ETA)
        self._step(F.mse_loss(self._predict(self.backend, x, draw.t, self.erased), target), self.optimizer, 1)

    def _eap_iteration(self) -> None:
        found = self._found()
        draw, x_e, x_a = self._pair(found)
        with torch.no_grad():
            eps_uncond = self._predict(self.frozen, x_e, draw.t, self.uncond)
            eps_erased = self._predict(self.frozen, x_e, draw.t, self.erased)
            eps_found = self._predict(self.frozen, x_a, draw.t, found.detach())
        edited_e = self._predict(self.backend, x_e, draw.t, self.erased)
        edited_a = self._predict(self.backend, x_a, draw.t, found)
        weight = (1 - draw.alpha_bar) / draw.alpha_bar  # x0-space MSE (ref §2.3 step 4)
        gap = weight * F.mse_loss(edited_a, eps_found)
        if self.iteration % 2 == 0:
            target = negative_guidance_target(eps_uncond, eps_erased, ETA)
            self._step(weight * F.mse_loss(edited_e, target) + gap, self.optimizer, 2)
        else:
            self._step(-gap, self.search_optimizer, 1)

    def _age_iteration(self) -> None:
        found = self._found()
        draw, x_e, x_t = self._pair(found)
        with torch.no_grad():
            eps_target_e = self._predict(self.frozen, x_e, draw.t, found.detach())
            eps_erased = self._predict(self.frozen, x_e, draw.t, self.erased)
            eps_target_t = self._predict(self.frozen, x_t, draw.t, found.detach())
        edited_e = self._predict(self.backend, x_e, draw.t, self.erased)
        edited_t = self._predict(self.backend, x_t, draw.t, found)
        weight = (1 - draw.alpha_bar) / draw.alpha_bar
        preserve = weight * F.mse_loss(edited_t, eps_target_t)
        if self.iteration % 2 == 0:
            target = negative_guidance_target(eps_target_e, eps_erased, ETA)
            self._step(weight * F.mse_loss(edited_e, target) + preserve, self.optimizer, 2)
        else:
            self._step(-(weight * F.mse_loss(edited_e, eps_target_e) + preserve), self.search_optimizer, 2)

    # -- pieces ----------------------------------------------------------------------------------------------
    def _predict(self, model: Backend, x: torch.Tensor, t: int, cond: Conditioning) -> torch.Tensor:
        self.unet_evals += x.shape[0]
        timesteps = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
        return model.predict_noise(x, timesteps, cond)

    def _sample(self, cond: Conditioning, z: torch.Tensor, draw: TimestepDraw) -> torch.Tensor:
        x, _ = ddim_sample(
            lambda x, t, c: self._predict(self.backend, x, int(t[0]), c),
            z,
            cond.detach(),
            self.uncond,
            GUIDANCE,
            draw.path,
            self.backend.alphas_cumprod,
        )
        return x

    def _draw(self) -> TimestepDraw:
        return timestep_at(self._index, self.backend.alphas_cumprod, DDIM_STEPS, True, self.generator)

    def _noise(self) -> torch.Tensor:
        shape = self.backend.latent_shape()
        return torch.randn((1, *shape), generator=self.generator).to(self.backend.device)

    def _latent(self, cond: Conditioning) -> tuple[TimestepDraw, torch.Tensor]:
        draw = self._draw()
        return draw, self._sample(cond, self._noise(), draw)

    def _pair(self, found: Conditioning) -> tuple[TimestepDraw, torch.Tensor, torch.Tensor]:
        """x_e and x_a from the same z_T, by two separate batch-1 samplings as in the reference."""
        draw, z = self._draw(), self._noise()
        return draw, self._sample(self.erased, z, draw), self._sample(found.detach(), z, draw)

    def _found(self) -> Conditioning:
        weights = gumbel_sample(self.logits, 2.0, True, 2, self.generator)
        return self.candidates.mix(weights)

    def _step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer, samples: int) -> None:
        """Backward and one step; a backward counts one UNet evaluation per sample it passes through (as ours)."""
        self.optimizer.zero_grad(set_to_none=True)
        self.search_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.unet_evals += samples
        optimizer.step()


def cuda_sync(device: torch.device) -> None:
    """Wait for the device's queued work, so that wall-clock timings include it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
