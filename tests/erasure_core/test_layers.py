from __future__ import annotations

import pytest
import torch
from diffusers import UNet2DConditionModel

from erasure_core import ModelError
from erasure_core.layers import select_modules


@pytest.fixture(scope="module")
def sd15_unet() -> UNet2DConditionModel:
    with torch.device("meta"):  # the real SD1.5 architecture, no memory
        return UNet2DConditionModel(cross_attention_dim=768, attention_head_dim=8)


def test_xattn_selects_every_cross_attention_projection(sd15_unet: UNet2DConditionModel) -> None:
    names = select_modules(sd15_unet.named_modules(), "xattn")
    assert len(names) == 16 * 4  # 16 transformer blocks x (to_q, to_k, to_v, to_out.0)
    assert all(".attn2." in n for n in names)


def test_xattn_kv_selects_keys_and_values_only(sd15_unet: UNet2DConditionModel) -> None:
    names = select_modules(sd15_unet.named_modules(), "xattn-kv")
    assert len(names) == 32 and {n.rsplit(".", 1)[1] for n in names} == {"to_k", "to_v"}


def test_noxattn_covers_convolutions_but_not_cross_attention_or_time_embedding(
    sd15_unet: UNet2DConditionModel,
) -> None:
    names = select_modules(sd15_unet.named_modules(), "noxattn")
    assert not any(".attn2." in n or "time_emb" in n for n in names)
    assert (
        "down_blocks.0.resnets.0.conv1" in names
        and "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q" in names
    )
    assert "conv_out" not in names


def test_full_is_the_union(sd15_unet: UNet2DConditionModel) -> None:
    full = set(select_modules(sd15_unet.named_modules(), "full"))
    parts = set(select_modules(sd15_unet.named_modules(), "xattn")) | set(
        select_modules(sd15_unet.named_modules(), "noxattn")
    )
    assert parts < full and "time_embedding.linear_1" in full


def test_model_without_cross_attention_raises() -> None:
    unet = UNet2DConditionModel(
        sample_size=8,
        block_out_channels=(8, 16),
        layers_per_block=1,
        norm_num_groups=4,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        mid_block_type=None,
    )
    with pytest.raises(ModelError, match="no cross-attention"):
        select_modules(unet.named_modules(), "xattn")
