"""LoRA layers on the host's UNet through peft: inject, switch on and off, read out, load, remove.

The frozen model of every method is the same UNet with the adapter switched off (`edit_disabled`), so no second
copy of the weights is ever made. `remove_lora` puts the original modules back, leaving the host's model exactly
as it was handed over.
"""

from __future__ import annotations

import contextlib
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from peft import LoraConfig, inject_adapter_in_model
from peft.tuners.lora import Linear as PeftLinear
from peft.tuners.lora import LoraLayer
from torch import nn

from ..layers import is_linear_like

ADAPTER_NAME = "erasure"


@dataclass
class LoraTensors:
    """One layer's LoRA in kohya orientation: `delta_W = (alpha / rank) * up @ down`."""

    down: torch.Tensor  # [rank, in] or [rank, in, kh, kw]
    up: torch.Tensor  # [out, rank] or [out, rank, 1, 1]
    alpha: float

    @property
    def rank(self) -> int:
        return self.down.shape[0]

    def delta(self) -> torch.Tensor:
        """The weight change this LoRA applies, shaped like the base weight."""
        scale = self.alpha / self.rank
        up = self.up.flatten(1).float()
        down = self.down.flatten(1).float()
        out = scale * up @ down
        return out.reshape(self.up.shape[0], *self.down.shape[1:])


LoraWeights = dict[str, LoraTensors]  # keyed by UNet module name, in the backend's naming


def inject_lora(
    unet: nn.Module, module_names: list[str], rank: int, alpha: float, ranks: dict[str, int] | None = None
) -> list[nn.Parameter]:
    """Wrap `module_names` in peft LoRA layers (B = 0, so the model is unchanged) and return the trainable params.

    `ranks` gives per-module ranks (UCE's SVD export, resumed files); `load_lora_weights` then sets each scale.
    """
    pattern = {re.escape(name): r for name, r in (ranks or {}).items()}
    config = LoraConfig(
        r=rank,
        lora_alpha=alpha,
        target_modules=list(module_names),
        rank_pattern=pattern,
        lora_dropout=0.0,
        init_lora_weights=True,
    )
    linear_like = {type(m) for name in module_names if is_linear_like(m := unet.get_submodule(name))}
    if linear_like:  # peft wraps them as it wraps nn.Linear: it only needs in/out features and the weight
        config._register_custom_module(dict.fromkeys(linear_like, PeftLinear))
    with warnings.catch_warnings():  # peft warns about every class it was not built for, registered ones too
        warnings.filterwarnings("ignore", message="Unsupported layer type")
        inject_adapter_in_model(config, unet, adapter_name=ADAPTER_NAME)
    params: list[nn.Parameter] = []
    for layer in lora_layers(unet).values():
        for sub in (layer.lora_A[ADAPTER_NAME], layer.lora_B[ADAPTER_NAME]):
            sub.float()  # LoRA weights and their optimiser state stay fp32 whatever the model's dtype
            sub.requires_grad_(True)
            params.extend(sub.parameters())
    return params


def lora_layers(unet: nn.Module) -> dict[str, LoraLayer]:
    return {name: m for name, m in unet.named_modules() if isinstance(m, LoraLayer) and ADAPTER_NAME in m.lora_A}


def has_lora(unet: nn.Module) -> bool:
    return bool(lora_layers(unet))


@contextlib.contextmanager
def edit_disabled(unet: nn.Module) -> Iterator[None]:
    """Run the original model: the same UNet with every erasure LoRA layer switched off."""
    layers = list(lora_layers(unet).values())
    for layer in layers:
        layer.enable_adapters(False)
    try:
        yield
    finally:
        for layer in layers:
            layer.enable_adapters(True)  # peft also turns requires_grad of the LoRA weights back on


def extract_lora(unet: nn.Module) -> LoraWeights:
    """Copy the injected LoRA out as kohya-oriented fp32 tensors on the CPU."""
    out: LoraWeights = {}
    for name, layer in lora_layers(unet).items():
        down = layer.lora_A[ADAPTER_NAME].weight.detach().float().cpu().clone()
        up = layer.lora_B[ADAPTER_NAME].weight.detach().float().cpu().clone()
        alpha = layer.scaling[ADAPTER_NAME] * down.shape[0]
        out[name] = LoraTensors(down, up, float(alpha))
    return out


@torch.no_grad()
def load_lora_weights(unet: nn.Module, weights: LoraWeights) -> list[nn.Parameter]:
    """Inject LoRA layers with exactly the ranks and alphas of `weights` and copy the tensors in."""
    names = list(weights)
    first = weights[names[0]]
    ranks = {n: w.rank for n, w in weights.items()}
    params = inject_lora(unet, names, first.rank, first.alpha, ranks=ranks)
    layers = lora_layers(unet)
    for name, w in weights.items():
        layer = layers[name]
        layer.lora_A[ADAPTER_NAME].weight.copy_(w.down.reshape(layer.lora_A[ADAPTER_NAME].weight.shape))
        layer.lora_B[ADAPTER_NAME].weight.copy_(w.up.reshape(layer.lora_B[ADAPTER_NAME].weight.shape))
        layer.scaling[ADAPTER_NAME] = w.alpha / w.rank
    return params


def remove_lora(unet: nn.Module) -> None:
    """Replace every peft LoRA layer by the module it wraps; the UNet is then exactly the original one."""
    for name, layer in list(lora_layers(unet).items()):
        parent_name, _, child = name.rpartition(".")
        parent = unet.get_submodule(parent_name) if parent_name else unet
        setattr(parent, child, layer.get_base_layer())
    configs = getattr(unet, "peft_config", None)
    if isinstance(configs, dict):
        configs.pop(ADAPTER_NAME, None)
        if not configs:
            del unet.peft_config
