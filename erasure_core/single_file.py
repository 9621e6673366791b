"""What a single-file checkpoint does not carry, shipped: each architecture's configs and the CLIP tokenizer.

Community checkpoints come as one `.safetensors` file (ldm layout), usually with no diffusers folder beside it.
diffusers' `from_single_file` reads the weights from the file but wants the architecture's configs and tokenizers
from the model hub. Here they come from this module instead: the configs are the published architectures' numbers
(below, one place), and the tokenizer files are rebuilt from CLIP's byte-pair vocabulary shipped in
`data/clip/`, so loading never touches the network.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

from .errors import ModelError

BPE_FILE = Path(__file__).resolve().parent / "data" / "clip" / "bpe_simple_vocab_16e6.txt.gz"
CLIP_VOCAB_SIZE = 49408
START, END = "<|startoftext|>", "<|endoftext|>"

_BETAS = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "num_train_timesteps": 1000}
_VAE = {
    "_class_name": "AutoencoderKL",
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "block_out_channels": [128, 256, 512, 512],
    "layers_per_block": 2,
    "latent_channels": 4,
    "norm_num_groups": 32,
    "act_fn": "silu",
}
_CLIP_L = {  # OpenAI CLIP ViT-L/14's text tower: SD1.x, and SDXL's first encoder
    "architectures": ["CLIPTextModel"],
    "model_type": "clip_text_model",
    "vocab_size": CLIP_VOCAB_SIZE,
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "max_position_embeddings": 77,
    "hidden_act": "quick_gelu",
    "projection_dim": 768,
    "layer_norm_eps": 1e-5,
}
_OPENCLIP_H = {  # OpenCLIP ViT-H/14's text tower, last layer dropped (SD2.x reads the penultimate one)
    **_CLIP_L,
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_hidden_layers": 23,
    "num_attention_heads": 16,
    "hidden_act": "gelu",
    "projection_dim": 512,
}
_OPENCLIP_BIGG = {  # OpenCLIP ViT-bigG/14's text tower with its projection: SDXL's second encoder
    **_CLIP_L,
    "architectures": ["CLIPTextModelWithProjection"],
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "num_hidden_layers": 32,
    "num_attention_heads": 20,
    "hidden_act": "gelu",
    "projection_dim": 1280,
}
_SD_UNET = {
    "_class_name": "UNet2DConditionModel",
    "in_channels": 4,
    "out_channels": 4,
    "layers_per_block": 2,
    "block_out_channels": [320, 640, 1280, 1280],
    "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
    "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
    "norm_num_groups": 32,
}

# Per architecture: the pipeline, each component's config, the tokenizers' padding token and the noise schedule.
ARCHITECTURES: dict[str, dict[str, Any]] = {
    "sd1": {
        "pipeline": "StableDiffusionPipeline",
        "unet": {**_SD_UNET, "sample_size": 64, "cross_attention_dim": 768, "attention_head_dim": 8},
        "vae": {**_VAE, "sample_size": 512, "scaling_factor": 0.18215},
        "text_encoder": _CLIP_L,
        "tokenizer": END,
        "prediction_type": "epsilon",
    },
    "sd2": {  # SD2.x 768-v (the usual SD2 checkpoint); `prediction_type` may be set to epsilon for the 512 base
        "pipeline": "StableDiffusionPipeline",
        "unet": {
            **_SD_UNET,
            "sample_size": 96,
            "cross_attention_dim": 1024,
            "attention_head_dim": [5, 10, 20, 20],
            "use_linear_projection": True,
        },
        "vae": {**_VAE, "sample_size": 768, "scaling_factor": 0.18215},
        "text_encoder": _OPENCLIP_H,
        "tokenizer": "!",
        "prediction_type": "v_prediction",
    },
    "sdxl": {
        "pipeline": "StableDiffusionXLPipeline",
        "unet": {
            **_SD_UNET,
            "sample_size": 128,
            "block_out_channels": [320, 640, 1280],
            "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
            "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
            "transformer_layers_per_block": [1, 2, 10],
            "attention_head_dim": [5, 10, 20],
            "cross_attention_dim": 2048,
            "use_linear_projection": True,
            "addition_embed_type": "text_time",
            "addition_time_embed_dim": 256,
            "projection_class_embeddings_input_dim": 2816,
        },
        "vae": {**_VAE, "sample_size": 1024, "scaling_factor": 0.13025, "force_upcast": True},
        "text_encoder": _CLIP_L,
        "tokenizer": END,
        "text_encoder_2": _OPENCLIP_BIGG,
        "tokenizer_2": "!",
        "prediction_type": "epsilon",
    },
}


def constructor_arguments(arch: str, part: str) -> dict[str, Any]:
    """A part's shipped config as its class takes it (without the file-only class and type fields)."""
    config = ARCHITECTURES[arch][part]
    return {k: v for k, v in config.items() if not k.startswith("_") and k not in ("architectures", "model_type")}


def detect_architecture(keys: Iterable[str], in_channels: int | None = None) -> str:
    """sd1, sd2 or sdxl from an ldm checkpoint's tensor names; `ModelError` for what is not one of them."""
    keys = set(keys)
    if not any(k.startswith("model.diffusion_model.") for k in keys):
        raise ModelError("The file holds no Stable Diffusion UNet weights (no 'model.diffusion_model.*' keys).")
    if in_channels not in (None, 4):
        raise ModelError(
            f"The UNet takes {in_channels} input channels: an inpainting or other conditioned model, which this "
            "tool does not erase from. Use the base text-to-image checkpoint."
        )
    if any(k.startswith("conditioner.embedders.1.") for k in keys):
        if (
            not any(k.startswith("conditioner.embedders.0.") for k in keys)
            or "model.diffusion_model.label_emb.0.0.weight" not in keys
        ):
            raise ModelError("This looks like an SDXL refiner (one text encoder); erase from the SDXL base model.")
        return "sdxl"
    if any(k.startswith("cond_stage_model.model.") for k in keys):
        return "sd2"
    if any(k.startswith("cond_stage_model.transformer.") for k in keys):
        return "sd1"
    raise ModelError(
        "The file has a UNet but no text encoder this tool knows (SD1.x's CLIP, SD2.x's OpenCLIP or SDXL's two); "
        "give a full SD1.x, SD2.x or SDXL checkpoint."
    )


def _byte_alphabet() -> list[str]:
    """The 256 characters byte-level BPE writes bytes with, in vocabulary order: the printable Latin-1 bytes as
    themselves first, then the others (whitespace, control characters) as the characters from 256 on."""
    kept = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in kept]
    return [chr(b) for b in kept] + [chr(256 + n) for n in range(len(others))]


@cache
def clip_merges() -> tuple[str, ...]:
    """CLIP's byte-pair merges, in order ("i n", "t h", ...): as many as fill the vocabulary to 49408."""
    lines = gzip.decompress(BPE_FILE.read_bytes()).decode("utf-8").split("\n")
    return tuple(lines[1 : CLIP_VOCAB_SIZE - 2 * 256 - 2 + 1])


def clip_vocab() -> dict[str, int]:
    """Token to id, in CLIP's order: the 256 byte characters, the same ending a word, every merge, then the two
    special tokens (49406 and 49407)."""
    alphabet = _byte_alphabet()
    tokens = alphabet + [c + "</w>" for c in alphabet] + ["".join(m.split(" ")) for m in clip_merges()] + [START, END]
    return {token: i for i, token in enumerate(tokens)}


def write_tokenizer(folder: Path, pad_token: str) -> None:
    """A Hugging Face CLIPTokenizer folder: SD1.x pads with the end token, OpenCLIP's encoders with "!"."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(clip_vocab(), ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(clip_merges()) + "\n", encoding="utf-8")
    special = {"bos_token": START, "eos_token": END, "unk_token": END, "pad_token": pad_token}
    (folder / "special_tokens_map.json").write_text(json.dumps(special))
    config = {"tokenizer_class": "CLIPTokenizer", "model_max_length": 77, "do_lower_case": True, **special}
    (folder / "tokenizer_config.json").write_text(json.dumps(config))


def write_config_folder(arch: str, folder: Path, prediction_type: str | None = None) -> Path:
    """A diffusers model folder without weights for `arch` (what `from_single_file(config=...)` reads)."""
    spec = ARCHITECTURES[arch]
    components: dict[str, list[str | None]] = {
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
        "scheduler": ["diffusers", "DDIMScheduler"],
    }
    for name, config in spec.items():
        if name.startswith("text_encoder"):
            _write_json(folder / name / "config.json", config)
            components[name] = ["transformers", config["architectures"][0]]
        elif name.startswith("tokenizer"):
            write_tokenizer(folder / name, config)
            components[name] = ["transformers", "CLIPTokenizer"]
        elif name in ("unet", "vae"):
            _write_json(folder / name / "config.json", config)
    scheduler = {
        "_class_name": "DDIMScheduler",
        **_BETAS,
        "clip_sample": False,
        "set_alpha_to_one": False,
        "steps_offset": 1,
        "prediction_type": prediction_type or spec["prediction_type"],
    }
    _write_json(folder / "scheduler" / "scheduler_config.json", scheduler)
    index: dict[str, Any] = {"_class_name": spec["pipeline"], **components}
    if spec["pipeline"] == "StableDiffusionPipeline":
        index |= {"safety_checker": [None, None], "feature_extractor": [None, None], "requires_safety_checker": False}
    else:
        index |= {"force_zeros_for_empty_prompt": True}
    _write_json(folder / "model_index.json", index)
    return folder


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))
