"""UCE: Unified Concept Editing (Gandikota et al., WACV 2024), algorithms.md §4, as a seconds-fast option.

For every cross-attention key/value projection W (paper Eq. 7):
    W_new = (lam * W + s_e * sum_e v*_e c_e^T + s_p * sum_p (W c_p) c_p^T) (lam * I + s_e * sum_e c_e c_e^T + s_p * sum_p c_p c_p^T)^-1
with v*_e = W c_guide. Which token embeddings c are (`tokens`):
    "subject": each prompt's last subject token (UCE's current code);
    "tail":    the last subject token and every position after it, end and padding tokens included, each mapped to the
               guide's position at the same offset from its own last subject token (the UCE code EAP and AGE ran);
    "all":     every position, each mapped to the guide's same position. For bidirectional text encoders, whose every
               position (padding included) carries the prompt, editing only the subject token leaves the concept in.
The change W_new - W is exported as a LoRA by truncated SVD, keeping `energy` of its squared singular values.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..backends.base import Conditioning
from ..cancel import checkpoint
from ..config import UceConfig
from ..errors import ModelError, NumericalError
from ..lora.adapter import LoraTensors, LoraWeights


def last_token_embeddings(cond: Conditioning) -> torch.Tensor:
    """`[B, D]`: the embedding of each prompt's last subject token (the one before the end token)."""
    index = _last_subject(cond)
    return cond.context[torch.arange(len(cond)), index].double()


def _last_subject(cond: Conditioning) -> torch.Tensor:
    if cond.lengths is None:
        raise ModelError("UCE needs each prompt's token count; this backend's encoder does not report it.")
    return (cond.lengths.to(cond.context.device) - 2).clamp(min=0)


def token_rows(cond: Conditioning, tokens: str) -> list[torch.Tensor]:
    """Per prompt, the rows `[n, D]` (float64) of the embeddings UCE edits or keeps (`tokens`, see the module)."""
    if tokens == "subject":
        return list(last_token_embeddings(cond)[:, None])
    if tokens == "all":
        return list(cond.context.double())
    starts = _last_subject(cond).tolist()
    return [cond.context[i, start:].double() for i, start in enumerate(starts)]


def aligned_rows(erased: Conditioning, guides: Conditioning, tokens: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per erased prompt, its rows and its guide's rows they are mapped to (same count, row by row)."""
    if erased.context.shape[1:] != guides.context.shape[1:] or len(erased) != len(guides):
        raise ModelError(
            f"{len(guides)} guide prompts encode to {tuple(guides.context.shape[1:])} but {len(erased)} concept "
            f"prompts to {tuple(erased.context.shape[1:])}; UCE needs one guide per prompt, from the same encoder."
        )
    pairs = []
    for rows, guide_rows in zip(token_rows(erased, tokens), token_rows(guides, tokens), strict=True):
        n = min(len(rows), len(guide_rows))  # "tail": the later-starting of the two runs out first
        pairs.append((rows[:n], guide_rows[:n]))
    return pairs


def closed_form_edit(
    weight: torch.Tensor,
    erased: torch.Tensor,
    guide: torch.Tensor,
    kept: torch.Tensor,
    config: UceConfig,
) -> torch.Tensor:
    """The edited weight of one projection (Eq. 7), computed in float64.

    Embeddings are rows `[N, in]`; `guide[i]` is the embedding whose projection `erased[i]` receives. Per-row weights
    enter as sqrt(weight) on the rows (guide rows included), so they multiply each row's term of the least squares.
    """
    w = weight.double()
    eye = torch.eye(w.shape[1], dtype=torch.float64, device=w.device)
    lam, s_e, s_p = config.uce_lambda, config.erase_scale, config.preserve_scale
    left = lam * w + s_e * (w @ guide.T) @ erased
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


def expand(texts: Sequence[str], templates: Sequence[str]) -> list[str]:
    """Each text bare, then in each template ("a photo of a {}"), text after text (UCE's prompt expansion)."""
    return [" ".join(t.format(text).split()) for text in texts for t in ("{}", *templates)]


@torch.no_grad()
def uce_weights(
    unet: nn.Module,
    module_names: list[str],
    erased: Conditioning,
    guides: Conditioning,
    kept: Conditioning | None,
    erase_weights: Sequence[float],
    keep_weights: Sequence[float],
    config: UceConfig,
) -> LoraWeights:
    """The UCE edit of every selected to_k/to_v projection, as LoRA tensors. `guides[i]` is the prompt whose
    projections erased prompt `i` receives; the weights are per prompt."""
    pairs = aligned_rows(erased, guides, config.tokens)
    roots = [w**0.5 for w in erase_weights]
    c_e = torch.cat([rows * root for (rows, _), root in zip(pairs, roots, strict=True)])
    c_g = torch.cat([rows * root for (_, rows), root in zip(pairs, roots, strict=True)])
    c_p = c_e.new_zeros((0, c_e.shape[1]))
    if kept is not None:
        kept_rows = token_rows(kept, config.tokens)
        c_p = torch.cat([rows * w**0.5 for rows, w in zip(kept_rows, keep_weights, strict=True)]).to(c_e.device)
    out: LoraWeights = {}
    for name in module_names:
        checkpoint("solve")
        weight = unet.get_submodule(name).weight
        c_e_, c_g_, c_p_ = (t.to(weight.device) for t in (c_e, c_g, c_p))
        delta = closed_form_edit(weight, c_e_, c_g_, c_p_, config) - weight.double()
        if not torch.isfinite(delta).all():
            raise NumericalError(
                f"The UCE edit of {name} is not finite; raise uce_lambda (now {config.uce_lambda}) or check the model."
            )
        out[name] = svd_lora(delta, config.energy, config.max_rank)
    return out
