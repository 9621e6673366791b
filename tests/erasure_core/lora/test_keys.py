"""Key names as sd-scripts writes them: diffusers-style paths for SD1.x/2.x, ldm (sgm) paths for SDXL."""

from __future__ import annotations

import pytest
import torch
from diffusers import UNet2DConditionModel

from erasure_core import ModelError
from erasure_core.layers import is_trainable_type
from erasure_core.lora.keys import diffusers_to_ldm, kohya_key_map, ldm_to_diffusers
from erasure_core.single_file import constructor_arguments

SDXL_CONFIG = constructor_arguments("sdxl", "unet")


@pytest.fixture(scope="module")
def sd15_names() -> list[str]:
    with torch.device("meta"):
        return [n for n, _ in UNet2DConditionModel(cross_attention_dim=768, attention_head_dim=8).named_modules()]


@pytest.fixture(scope="module")
def sdxl_unet() -> UNet2DConditionModel:
    with torch.device("meta"):
        return UNet2DConditionModel(**SDXL_CONFIG)


def test_sd1_keys_use_diffusers_paths(sd15_names: list[str]) -> None:
    keys = kohya_key_map(sd15_names, "sd1", "diffusers")
    name = "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k"
    assert keys[name] == "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k"


@pytest.mark.parametrize(
    ("diffusers_name", "ldm_key"),
    [
        (
            "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k",
            "lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k",
        ),
        (
            "down_blocks.2.attentions.1.transformer_blocks.9.ff.net.2",
            "lora_unet_input_blocks_8_1_transformer_blocks_9_ff_net_2",
        ),
        ("down_blocks.0.resnets.1.conv1", "lora_unet_input_blocks_2_0_in_layers_2"),
        ("down_blocks.0.downsamplers.0.conv", "lora_unet_input_blocks_3_0_op"),
        ("down_blocks.1.resnets.0.conv_shortcut", "lora_unet_input_blocks_4_0_skip_connection"),
        ("mid_block.attentions.0.proj_in", "lora_unet_middle_block_1_proj_in"),
        ("mid_block.resnets.1.time_emb_proj", "lora_unet_middle_block_2_emb_layers_1"),
        (
            "up_blocks.0.attentions.2.transformer_blocks.0.attn1.to_out.0",
            "lora_unet_output_blocks_2_1_transformer_blocks_0_attn1_to_out_0",
        ),
        ("up_blocks.0.upsamplers.0.conv", "lora_unet_output_blocks_2_2_conv"),
        ("up_blocks.1.upsamplers.0.conv", "lora_unet_output_blocks_5_2_conv"),
        ("up_blocks.2.resnets.2.conv2", "lora_unet_output_blocks_8_0_out_layers_3"),
        ("time_embedding.linear_1", "lora_unet_time_embed_0"),
        ("add_embedding.linear_2", "lora_unet_label_emb_0_2"),
        ("conv_in", "lora_unet_input_blocks_0_0"),
        ("conv_out", "lora_unet_out_2"),
    ],
)
def test_sdxl_keys_use_ldm_paths(sdxl_unet: UNet2DConditionModel, diffusers_name: str, ldm_key: str) -> None:
    keys = kohya_key_map([n for n, _ in sdxl_unet.named_modules()], "sdxl", "diffusers", layers_per_block=2)
    assert keys[diffusers_name] == ldm_key


def test_sdxl_mapping_names_every_trainable_module_uniquely(sdxl_unet: UNet2DConditionModel) -> None:
    trainable = [n for n, m in sdxl_unet.named_modules() if is_trainable_type(m)]
    keys = kohya_key_map([n for n, _ in sdxl_unet.named_modules()], "sdxl", "diffusers", layers_per_block=2)
    assert set(trainable) <= set(keys)
    assert len({keys[n] for n in trainable}) == len(trainable)


def test_sd1_upsampler_without_attention_sits_in_slot_one(sd15_names: list[str]) -> None:
    assert diffusers_to_ldm(sd15_names, 2)["up_blocks.0.upsamplers.0.conv"] == "output_blocks.2.1.conv"


@pytest.mark.parametrize("arch", ["sd1", "sd2", "sdxl"])
def test_ldm_named_hosts_write_the_keys_a_diffusers_model_does(arch: str) -> None:
    """ComfyUI and A1111 name UNet modules the ldm way; their files carry the keys a diffusers model's file does
    (SD1/SD2: diffusers paths, the only ones diffusers' loader reads; SDXL: ldm paths), on every trainable layer."""
    config = constructor_arguments(arch, "unet")
    with torch.device("meta"):
        unet = UNet2DConditionModel(**config)
    names = [n for n, _ in unet.named_modules()]
    trainable = [n for n, m in unet.named_modules() if n and is_trainable_type(m)]
    ldm = diffusers_to_ldm(names, config["layers_per_block"])
    assert all(ldm_to_diffusers(ldm.values())[ldm[n]] == n for n in trainable)  # the inverse, layer by layer
    containers = [n for n in names if n.startswith(("input_blocks", "output_blocks"))]  # what a host's list holds
    from_host = kohya_key_map([*ldm.values(), *containers], arch, "ldm")
    from_diffusers = kohya_key_map(names, arch, "diffusers", config["layers_per_block"])
    assert all(from_host[ldm[n]] == from_diffusers[n] for n in trainable)
    assert all(from_diffusers[n].startswith("lora_unet_input_blocks" if arch == "sdxl" else "lora_unet_")
               for n in trainable if n.startswith("down_blocks"))  # fmt: skip


def test_unknown_architecture_raises() -> None:
    with pytest.raises(ModelError, match="architecture"):
        kohya_key_map(["a"], "flux", "diffusers")
