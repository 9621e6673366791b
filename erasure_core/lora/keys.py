"""The one mapping between UNet module names and kohya LoRA keys, used by export, resume and the hosts.

Files follow sd-scripts: `lora_unet_<module path with "_">.lora_down.weight / .lora_up.weight / .alpha`, with
diffusers-style module paths for SD1.x/SD2.x and ldm (CompVis/sgm) paths for SDXL (hosts.md §5.2-5.3), also from
hosts whose UNet has ldm names: ComfyUI and A1111/Forge load SD1.x/SD2.x files with either spelling, but diffusers'
loader only with diffusers paths (ldm-style SD1 names fail there with "target modules not found").
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


_LDM_DOWNSAMPLER = re.compile(r"^input_blocks\.(\d+)\.0\.op(?:\.weight)?$")
_LDM_INPUT_BLOCK = re.compile(r"^input_blocks\.(\d+)\.")
_LDM_BLOCK = re.compile(r"^(input_blocks|output_blocks)\.(\d+)\.(\d+)(?:\.(.*))?$")
_LDM_MIDDLE = re.compile(r"^middle_block\.(\d+)(?:\.(.*))?$")
_LDM_TO_RESNET = {ldm: name for name, ldm in _RESNET_TO_LDM.items()}


def ldm_layers_per_block(paths: Iterable[str]) -> int:
    """ldm's input blocks go conv_in, then per level `n` blocks and a downsampler: the first downsampler sits at
    index n + 1 (a one-level UNet has none, and its last input block is n). Module or weight paths."""
    paths = list(paths)
    downsamplers = [int(m.group(1)) for m in map(_LDM_DOWNSAMPLER.match, paths) if m]
    if downsamplers:
        return min(downsamplers) - 1
    return max(int(m.group(1)) for m in map(_LDM_INPUT_BLOCK.match, paths) if m)


def ldm_to_diffusers(names: Iterable[str]) -> dict[str, str]:
    """Map ldm UNet module paths to diffusers paths: the inverse of `diffusers_to_ldm` for every layer that has a
    counterpart (containers such as a whole input block have none and are left out)."""
    names = list(names)
    n = ldm_layers_per_block(names)
    mapping: dict[str, str] = {}
    for name in names:
        top = next((src for src, dst in _TOP_LEVEL_TO_LDM.items() if name == dst or name.startswith(dst + ".")), None)
        if top is not None:
            mapping[name] = top + name[len(_TOP_LEVEL_TO_LDM[top]) :]
        elif path := _ldm_block_path(name, n):
            mapping[name] = path
    return mapping


def _ldm_block_path(name: str, n: int) -> str | None:
    """The diffusers path of one ldm path inside the input, middle or output blocks (n layers per block)."""
    if m := _LDM_MIDDLE.match(name):
        k, rest = int(m.group(1)), m.group(2)
        return _with_child("mid_block.attentions.0" if k == 1 else f"mid_block.resnets.{k // 2}", rest)
    m = _LDM_BLOCK.match(name)
    if m is None:
        return None
    kind, k, slot, rest = m.group(1), int(m.group(2)), int(m.group(3)), m.group(4)
    if kind == "input_blocks":
        i, j = divmod(k - 1, n + 1)
        if j == n:  # the level's downsampler: its conv is input_blocks.K.0.op
            return f"down_blocks.{i}.downsamplers.0.conv{rest[2:]}" if rest and rest.startswith("op") else None
        return _with_child(f"down_blocks.{i}.{'resnets' if slot == 0 else 'attentions'}.{j}", rest)
    i, j = divmod(k, n + 1)
    if slot == 2 or (slot == 1 and rest is not None and rest.startswith("conv")):  # the level's upsampler
        return f"up_blocks.{i}.upsamplers.0" + ("." + rest if rest else "")
    return _with_child(f"up_blocks.{i}.{'resnets' if slot == 0 else 'attentions'}.{j}", rest)


def _with_child(path: str, rest: str | None) -> str | None:
    """`path` plus the child `rest`, a ResBlock's children renamed (None for a container with no counterpart)."""
    if not rest:
        return path
    if ".resnets." not in path:
        return f"{path}.{rest}"
    for ldm, child in _LDM_TO_RESNET.items():
        if rest == ldm or rest.startswith(ldm + "."):
            return f"{path}.{child}{rest[len(ldm) :]}"
    return None


def kohya_prefix(module_path: str) -> str:
    return f"{LORA_PREFIX_UNET}_{module_path.replace('.', '_')}"


def kohya_key_map(
    module_names: Iterable[str], arch: str, module_naming: str, layers_per_block: int | None = None
) -> dict[str, str]:
    """Map every given UNet module name (in the backend's naming) to its kohya key prefix for `arch`.

    SD1/SD2 use diffusers-style paths and SDXL ldm-style paths, as sd-scripts writes them, whatever the backend's
    own naming: a host with ldm names (ComfyUI, A1111) gets the same keys as a diffusers model.
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
    if module_naming == "ldm" and arch in ("sd1", "sd2"):  # diffusers' loader reads SD1/SD2 files only this way
        diffusers = ldm_to_diffusers(names)
        return {name: kohya_prefix(diffusers.get(name, name)) for name in names}
    return {name: kohya_prefix(name) for name in names}
