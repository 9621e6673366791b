"""Layer sets: which UNet modules a LoRA may train, decided in one place for every method.

Module names are diffusers-style (`down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k`) or ldm-style
(`input_blocks.1.1.transformer_blocks.0.attn2.to_k`); the rules below only look at the attention and
time-embedding parts, which both namings share or which are listed for each.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import torch
from torch import nn

from .errors import ConfigError, ModelError

LayerSet = Literal["xattn", "xattn-kv", "noxattn", "full"]
LAYER_SETS: tuple[str, ...] = ("xattn", "xattn-kv", "noxattn", "full")

LAYER_SET_HELP = {
    "xattn": "cross-attention q/k/v/out (ESD-x): objects, styles, artists",
    "xattn-kv": "cross-attention to_k/to_v only: the layers UCE edits",
    "noxattn": "every layer but cross-attention, the global time embedding and the output (ESD-u): nudity, global "
    "concepts",
    "full": "every linear and convolution layer",
}

# The global time (and SDXL size/pooled-text) embedding MLP, which ESD-u leaves out. Each ResBlock's own projection of
# it (`time_emb_proj`, ldm `emb_layers`) is an ordinary layer there and is trained.
_GLOBAL_EMBEDDING_PARTS = ("time_embedding", "time_embed", "add_embedding", "label_emb")
_CROSS_ATTENTION_PARTS = ("attn2.to_q", "attn2.to_k", "attn2.to_v", "attn2.to_out")


def is_linear_like(module: nn.Module) -> bool:
    """A linear layer that is not an `nn.Linear`: Forge builds its UNet from its own `Linear(nn.Module)`, which keeps
    `in_features`, `out_features` and a `[out, in]` weight. `inject_lora` registers such classes with peft."""
    weight = getattr(module, "weight", None)
    return (
        not isinstance(module, nn.Linear)
        and isinstance(weight, torch.Tensor)
        and weight.shape == (getattr(module, "out_features", None), getattr(module, "in_features", None))
    )


def is_trainable_type(module: nn.Module) -> bool:
    """LoRA targets are linear and 2-D convolution layers (peft supports both, and so do kohya loaders)."""
    return isinstance(module, (nn.Linear, nn.Conv2d)) or is_linear_like(module)


def _in_set(name: str, layer_set: str) -> bool:
    parts = name.split(".")
    cross = any(p in name for p in _CROSS_ATTENTION_PARTS)
    if layer_set == "xattn":
        return cross
    if layer_set == "xattn-kv":
        return "attn2" in parts and parts[-1] in ("to_k", "to_v")
    if layer_set == "noxattn":
        # ref §1: everything except attn2, the global time embedding and the output layer ("out." in CompVis names).
        output_layer = parts[0] in ("conv_out", "out")
        return not cross and not output_layer and not any(p in parts for p in _GLOBAL_EMBEDDING_PARTS)
    if layer_set == "full":
        return True
    raise ConfigError(f"Unknown layer set {layer_set!r}; choose one of {', '.join(LAYER_SETS)}.")


def select_modules(named_modules: Iterable[tuple[str, nn.Module]], layer_set: str) -> list[str]:
    """Names of the LoRA-trainable modules of `layer_set`, in model order.

    Raises `ModelError` when the model has no cross-attention at all (not a text-conditioned UNet), and when the
    set selects nothing.
    """
    if layer_set not in LAYER_SETS:
        raise ConfigError(f"Unknown layer set {layer_set!r}; choose one of {', '.join(LAYER_SETS)}.")
    modules = [(name, m) for name, m in named_modules if name and is_trainable_type(m)]
    if not any(".attn2." in f".{name}." for name, _ in modules):
        raise ModelError(
            "This model has no cross-attention layers (no 'attn2' modules), so text prompts do not steer it and "
            "a concept cannot be erased from it. Load a text-conditioned Stable Diffusion UNet."
        )
    selected = [name for name, _ in modules if _in_set(name, layer_set)]
    if not selected:
        raise ModelError(f"The layer set {layer_set!r} selects no layer of this model; try 'xattn' or 'full'.")
    return selected
