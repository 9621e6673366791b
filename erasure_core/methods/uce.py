"""UCE: Unified Concept Editing (Gandikota et al., WACV 2024), algorithms.md §4, as a seconds-fast option.

For every cross-attention key/value projection W (paper Eq. 7):
    W_new = (lam * W + s_e * sum_e v*_e c_e^T + s_p * sum_p (W c_p) c_p^T) (lam * I + s_e * sum_e c_e c_e^T + s_p * sum_p c_p c_p^T)^-1
with c the text embedding of each concept's last subject token (UCE's current code), v*_e = W c_guide. The change
W_new - W is exported as a LoRA by truncated SVD, keeping `energy` of its squared singular values.
"""

from __future__ import annotations

import torch
from torch import nn

from ..backends.base import Conditioning
from ..config import UceConfig
from ..errors import ModelError, NumericalError
from ..lora.adapter import LoraTensors, LoraWeights


def last_token_embeddings(cond: Conditioning) -> torch.Tensor:
    """`[B, D]`: the embedding of each prompt's last subject token (the one before the end token)."""
    if cond.lengths is None:
        raise ModelError("UCE needs each prompt's token count; this backend's encoder does not report it.")
    index = (cond.lengths.to(cond.context.device) - 2).clamp(min=0)
    return cond.context[torch.arange(len(cond)), index].double()


def closed_form_edit(
    weight: torch.Tensor,
    erased: torch.Tensor,
    guide: torch.Tensor,
    kept: torch.Tensor,
    config: UceConfig,
) -> torch.Tensor:
    """The edited weight of one projection (Eq. 7); embeddings are rows `[N, in]`, computed in float64."""
    w = weight.double()
    eye = torch.eye(w.shape[1], dtype=torch.float64, device=w.device)
    lam, s_e, s_p = config.uce_lambda, config.erase_scale, config.preserve_scale
    # v*_e = W c_guide, one column per erased concept; per-concept weights enter both factors as sqrt(weight)
    root = torch.tensor(config.erase_weights, dtype=torch.float64, device=w.device).sqrt()
    targets = (w @ guide.T).expand(-1, erased.shape[0]) * root
    erased = erased * root[:, None]
    left = lam * w + s_e * targets @ erased
    right = lam * eye + s_e * erased.T @ erased
    if kept.numel():
        left = left + s_p * (w @ kept.T) @ kept
        right = right + s_p * kept.T @ kept
    return torch.linalg.solve(right, left, left=False)


def svd_lora(delta: torch.Tensor, energy: float, max_rank: int) -> LoraTensors:
    """Truncated SVD of a weight change, with the smallest rank keeping `energy` of sum(sigma^2); scale 1."""
    u, s, vh = torch.linalg.svd(delta.double(), full_matrices=False)
    total = float((s**2).sum())
    if total == 0.0:
        rank = 1
    else:
        kept = torch.cumsum(s**2, 0) / total
        rank = int(torch.searchsorted(kept, torch.tensor(energy, dtype=kept.dtype, device=kept.device)).item()) + 1
    rank = max(1, min(rank, max_rank, s.numel()))
    root = s[:rank].sqrt()
    up = (u[:, :rank] * root).float()
    down = (root[:, None] * vh[:rank]).float()
    return LoraTensors(down.cpu(), up.cpu(), float(rank))


@torch.no_grad()
def uce_weights(
    unet: nn.Module,
    module_names: list[str],
    erased: Conditioning,
    guide: Conditioning,
    kept: Conditioning | None,
    config: UceConfig,
) -> LoraWeights:
    """The UCE edit of every selected to_k/to_v projection, as LoRA tensors."""
    c_e = last_token_embeddings(erased)
    c_g = last_token_embeddings(guide)
    c_p = last_token_embeddings(kept) if kept is not None else c_e.new_zeros((0, c_e.shape[1]))
    if kept is not None:
        c_p = c_p * torch.tensor(config.keep_weights, dtype=c_p.dtype, device=c_p.device).sqrt()[:, None]
    out: LoraWeights = {}
    for name in module_names:
        weight = unet.get_submodule(name).weight
        c_e_, c_g_, c_p_ = (t.to(weight.device) for t in (c_e, c_g, c_p))
        delta = closed_form_edit(weight, c_e_, c_g_, c_p_, config) - weight.double()
        if not torch.isfinite(delta).all():
            raise NumericalError(
                f"The UCE edit of {name} is not finite; raise uce_lambda (now {config.uce_lambda}) or check the model."
            )
        out[name] = svd_lora(delta, config.energy, config.max_rank)
    return out
