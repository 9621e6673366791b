"""The one mapping between UNet module names and kohya LoRA keys, used by export, resume and the hosts.

Files follow sd-scripts: `lora_unet_<module path with "_">.lora_down.weight / .lora_up.weight / .alpha`, with
diffusers-style module paths for SD1.x/SD2.x and ldm (CompVis/sgm) paths for SDXL (hosts.md §5.2-5.3). Both
forms load in ComfyUI, A1111/Forge and diffusers; we write each architecture the way sd-scripts does.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from ..errors import ModelError

LORA_PREFIX_UNET = "lora_unet"
DOWN, UP, ALPHA = "lora_down.weight", "lora_up.weight", "alpha"

# diffusers ResnetBlock2D child -> ldm ResBlock child
_RESNET_TO_LDM = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "conv_shortcut": "skip_connection",
}
_TOP_LEVEL_TO_LDM = {
    "conv_in": "input_blocks.0.0",
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "add_embedding.linear_1": "label_emb.0.0",
    "add_embedding.linear_2": "label_emb.0.2",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
}
_BLOCK = re.compile(
    r"^(down_blocks|up_blocks)\.(\d+)\.(resnets|attentions|downsamplers|upsamplers)\.(\d+)(?:\.(.*))?$"
)
_MID = re.compile(r"^mid_block\.(resnets|attentions)\.(\d+)(?:\.(.*))?$")


def _resnet_child(rest: str | None) -> str:
    if not rest:
        return ""
    head, _, tail = rest.partition(".")
    mapped = _RESNET_TO_LDM.get(head, head)
    return "." + ".".join(p for p in (mapped, tail) if p)


def _attention_child(rest: str | None) -> str:
    return "." + rest if rest else ""


def diffusers_to_ldm(names: Iterable[str], layers_per_block: int) -> dict[str, str]:
    """Map diffusers UNet module paths to ldm paths (block index rule of hosts.md §5.2, any layers_per_block).

    Takes the whole module list so that it can tell whether an up block has attentions (which moves the upsampler).
    Names that have no ldm counterpart (containers, activations) are left out.
    """
    names = list(names)
    n = layers_per_block
    up_with_attention = {
        int(m.group(2))
        for m in map(_BLOCK.match, names)
        if m and m.group(1) == "up_blocks" and m.group(3) == "attentions"
    }
    mapping: dict[str, str] = {}
    for name in names:
        for src, dst in _TOP_LEVEL_TO_LDM.items():
            if name == src or name.startswith(src + "."):
                mapping[name] = dst + name[len(src) :]
                break
        else:
            if m := _BLOCK.match(name):
                kind, i, part, j, rest = m.group(1), int(m.group(2)), m.group(3), int(m.group(4)), m.group(5)
                if kind == "down_blocks":
                    if part == "downsamplers":
                        mapping[name] = f"input_blocks.{(n + 1) * (i + 1)}.0" + (
                            ".op" + rest[len("conv") :] if rest else ""
                        )
                    else:
                        child = _resnet_child(rest) if part == "resnets" else _attention_child(rest)
                        mapping[name] = f"input_blocks.{1 + (n + 1) * i + j}.{0 if part == 'resnets' else 1}{child}"
                else:
                    if part == "upsamplers":
                        slot = 2 if i in up_with_attention else 1
                        mapping[name] = f"output_blocks.{(n + 1) * i + n}.{slot}" + ("." + rest if rest else "")
                    else:
                        child = _resnet_child(rest) if part == "resnets" else _attention_child(rest)
                        mapping[name] = f"output_blocks.{(n + 1) * i + j}.{0 if part == 'resnets' else 1}{child}"
            elif m := _MID.match(name):
                part, k, rest = m.group(1), int(m.group(2)), m.group(3)
                if part == "resnets":
                    mapping[name] = f"middle_block.{2 * k}{_resnet_child(rest)}"
                else:
                    mapping[name] = f"middle_block.1{_attention_child(rest)}"
    return mapping


def kohya_prefix(module_path: str) -> str:
    return f"{LORA_PREFIX_UNET}_{module_path.replace('.', '_')}"


def kohya_key_map(
    module_names: Iterable[str], arch: str, module_naming: str, layers_per_block: int | None = None
) -> dict[str, str]:
    """Map every given UNet module name (in the backend's naming) to its kohya key prefix for `arch`.

    SD1/SD2 use diffusers-style paths and SDXL ldm-style paths, as sd-scripts writes them. A backend with
    ldm names (ComfyUI, A1111) on SD1/SD2 is written in ldm style, which every loader also accepts (hosts.md §5.3).
    """
    names = list(module_names)
    if module_naming not in ("diffusers", "ldm"):
        raise ModelError(f"Unknown module naming {module_naming!r}; expected 'diffusers' or 'ldm'.")
    if arch not in ("sd1", "sd2", "sdxl"):
        raise ModelError(f"Unknown architecture {arch!r}; supported: sd1, sd2, sdxl.")
    if module_naming == "diffusers" and arch == "sdxl":
        if layers_per_block is None:
            raise ModelError("SDXL key mapping needs the UNet's layers_per_block.")
        ldm = diffusers_to_ldm(names, layers_per_block)
        return {name: kohya_prefix(ldm[name]) for name in names if name in ldm}
    return {name: kohya_prefix(name) for name in names}


# diffusers module-path parts that contain "_" themselves; every other "_" of a kohya prefix was a "."
_COMPOUND_PARTS = (
    "down_blocks",
    "up_blocks",
    "mid_block",
    "transformer_blocks",
    "time_emb_proj",
    "time_embedding",
    "add_embedding",
    "conv_shortcut",
    "conv_norm_out",
    "conv_in",
    "conv_out",
    "proj_in",
    "proj_out",
    "linear_1",
    "linear_2",
    "to_out",
    "to_k",
    "to_q",
    "to_v",
)


def diffusers_path_from_kohya(prefix: str) -> str:
    """The diffusers module path a diffusers-style kohya prefix names (`lora_unet_down_blocks_0_attentions_0_...`
    → `down_blocks.0.attentions.0...`); kohya's "_" is ambiguous, so the parts that contain one are known."""
    rest = prefix.removeprefix(LORA_PREFIX_UNET + "_")
    for part in _COMPOUND_PARTS:
        rest = re.sub(rf"(?<![a-z0-9]){part}(?![a-z])", part.replace("_", "\0"), rest)
    return rest.replace("_", ".").replace("\0", "_")
