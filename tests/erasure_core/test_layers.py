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


def _esd_u_reference(ldm_name: str) -> bool:
    """ESD-u's parameter rule as the reference code states it (CompVis names): every parameter except those whose
    name starts with `out.` or contains `attn2` or `time_embed`."""
    return not (ldm_name.startswith("out.") or "attn2" in ldm_name or "time_embed" in ldm_name)


def test_noxattn_is_esd_u_covering_resblock_time_projections_but_not_the_global_embedding(
    sd15_unet: UNet2DConditionModel,
) -> None:
    names = select_modules(sd15_unet.named_modules(), "noxattn")
    assert not any(".attn2." in n or n.startswith(("time_embedding", "conv_out")) for n in names)
    assert {"down_blocks.0.resnets.0.conv1", "down_blocks.0.resnets.0.time_emb_proj"} <= set(names)
    assert "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q" in names
    # The same on ldm names (A1111, Forge, ComfyUI), against the reference's own rule.
    ldm = [
        "time_embed.0", "time_embed.2", "input_blocks.0.0", "input_blocks.1.0.in_layers.2",
        "input_blocks.1.0.emb_layers.1", "input_blocks.1.0.out_layers.3", "input_blocks.1.1.proj_in",
        "input_blocks.1.1.transformer_blocks.0.attn1.to_q", "input_blocks.1.1.transformer_blocks.0.attn2.to_k",
        "input_blocks.1.1.transformer_blocks.0.attn2.to_out.0", "input_blocks.1.1.transformer_blocks.0.ff.net.2",
        "middle_block.0.emb_layers.1", "output_blocks.2.1.conv", "out.2",
    ]  # fmt: skip
    selected = select_modules([(n, torch.nn.Linear(2, 2)) for n in ldm], "noxattn")
    assert selected == [n for n in ldm if _esd_u_reference(n)]
    assert "input_blocks.1.0.emb_layers.1" in selected


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
