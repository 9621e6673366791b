"""The diffusers backend: SD1.x, SD2.x and SDXL from a diffusers folder or a single-file checkpoint, local files only."""

from __future__ import annotations

import logging
import re
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ModelError
from .base import Conditioning, UnetPlacement, weights_fingerprint

logger = logging.getLogger(__name__)

_ENCODE_BATCH = 64  # prompts per text-encoder call: bounds memory when a whole vocabulary is encoded
_WORD = re.compile(r"^[a-z]{2,}$")


def detect_arch(unet: nn.Module, has_second_encoder: bool) -> str:
    """ "sdxl" when the UNet takes pooled text and size ids, "sd2" for 1024-wide cross-attention, else "sd1"."""
    config = unet.config
    if has_second_encoder or getattr(config, "addition_embed_type", None) == "text_time":
        return "sdxl"
    if getattr(config, "cross_attention_dim", None) == 1024:
        return "sd2"
    return "sd1"


def tokenizer_words(tokenizer: Any) -> list[str]:
    """Whole-word entries of a CLIP BPE (`word</w>`) or WordPiece (`word`, pieces start with `##`) vocabulary.

    Sorted by token id, which for both schemes puts frequent words first.
    """
    vocab: dict[str, int] = tokenizer.get_vocab()
    bpe = any(token.endswith("</w>") for token in vocab)
    words: dict[str, int] = {}
    for token, index in vocab.items():
        if bpe:
            if not token.endswith("</w>"):
                continue
            token = token[: -len("</w>")]
        if _WORD.match(token) and token not in words:
            words[token] = index
    return sorted(words, key=words.__getitem__)


def tokenize(tokenizer: Any, prompts: list[str]) -> dict[str, torch.Tensor]:
    """Pad every prompt to the tokenizer's full length, as SD pipelines do (the UNet sees the padding too)."""
    return tokenizer(
        prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
    )


def run_text_encoder(encoder: nn.Module, tokens: dict[str, torch.Tensor], penultimate: bool = False) -> Any:
    """Run a text encoder on `tokenize`'s output; BERT-like encoders get their attention mask, CLIP does not."""
    device = next(encoder.parameters()).device
    kwargs: dict[str, Any] = {"output_hidden_states": penultimate}
    if "clip" not in getattr(encoder.config, "model_type", "clip") and "attention_mask" in tokens:
        kwargs["attention_mask"] = tokens["attention_mask"].to(device)
    return encoder(tokens["input_ids"].to(device), **kwargs)


class DiffusersBackend(UnetPlacement):
    """A `Backend` over diffusers components (a pipeline's unet, text encoder(s), tokenizer(s) and scheduler)."""

    module_naming = "diffusers"
    supports_cuda_graphs = True  # predict_noise never synchronises with the host (see erasure_core/cuda_graphs.py)

    def __init__(
        self,
        unet: nn.Module,
        text_encoder: nn.Module,
        tokenizer: Any,
        scheduler: Any,
        *,
        text_encoder_2: nn.Module | None = None,
        tokenizer_2: Any = None,
        vae_scale_factor: int = 8,
        force_zeros_for_empty_prompt: bool = False,
        name: str = "model",
    ) -> None:
        self.unet = unet
        self.text_encoder = text_encoder
        self.tokenizer = tokenizer
        self.text_encoder_2 = text_encoder_2
        self.tokenizer_2 = tokenizer_2
        self.scheduler = scheduler
        self.vae: nn.Module | None = None  # set by from_pipeline / the demo loader; only previews need it
        self.vae_scale_factor = vae_scale_factor
        self.name = name
        self.arch = detect_arch(unet, text_encoder_2 is not None)
        # SDXL pipelines use zeros, not the encoding of "", as the unconditional input (ref: SDXL model_index).
        self.zero_empty_prompt = force_zeros_for_empty_prompt and self.arch == "sdxl"
        self.prediction_type = scheduler.config.get("prediction_type", "epsilon")
        if self.prediction_type not in ("epsilon", "v_prediction"):
            raise ModelError(
                f"The scheduler's prediction_type is {self.prediction_type!r}; only 'epsilon' and 'v_prediction' "
                "models are supported."
            )
        self.alphas_cumprod = _alphas_cumprod(scheduler).to(self.device)
        self._size_ids: dict[tuple, torch.Tensor] = {}
        for module in self.encoders():
            module.requires_grad_(False)
        unet.requires_grad_(False)

    @classmethod
    def from_pipeline(cls, pipe: Any, name: str | None = None) -> DiffusersBackend:
        vae = getattr(pipe, "vae", None)
        scale = 2 ** (len(vae.config.block_out_channels) - 1) if vae is not None else 8
        backend = cls(
            pipe.unet,
            pipe.text_encoder,
            pipe.tokenizer,
            pipe.scheduler,
            text_encoder_2=getattr(pipe, "text_encoder_2", None),
            tokenizer_2=getattr(pipe, "tokenizer_2", None),
            vae_scale_factor=scale,
            force_zeros_for_empty_prompt=bool(pipe.config.get("force_zeros_for_empty_prompt", False)),
            name=name or type(pipe).__name__,
        )
        backend.vae = vae
        return backend

    # -- Backend interface ------------------------------------------------------------------------------------
    def encoders(self) -> list[nn.Module]:
        return [m for m in (self.text_encoder, self.text_encoder_2) if m is not None]

    @torch.no_grad()
    def encode_prompts(self, prompts: Sequence[str]) -> Conditioning:
        return self._encode_batches(prompts, self.zero_empty_prompt)

    @torch.no_grad()
    def encode_text(self, prompts: Sequence[str]) -> Conditioning:
        """The text encoders' own encoding, without the SDXL pipelines' zeros for "" (a rule of the sampler's
        unconditional branch): UCE maps token embeddings onto the guide's, which must be a real encoding."""
        return self._encode_batches(prompts, False)

    def _encode_batches(self, prompts: Sequence[str], zero_empty: bool) -> Conditioning:
        batches = range(0, len(prompts), _ENCODE_BATCH)
        return Conditioning.cat([self._encode(list(prompts[i : i + _ENCODE_BATCH]), zero_empty) for i in batches])

    def predict_noise(self, x_t: torch.Tensor, timesteps: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        kwargs: dict[str, Any] = {}
        if self.arch == "sdxl":
            kwargs["added_cond_kwargs"] = {
                "text_embeds": cond.pooled.to(x_t.dtype),
                "time_ids": self._time_ids(x_t).expand(x_t.shape[0], -1),
            }
        out = self.unet(
            x_t.to(self.dtype), timesteps, encoder_hidden_states=cond.context.to(self.dtype), **kwargs
        ).sample.to(x_t.dtype)
        if self.prediction_type == "v_prediction":
            a = self.alphas_cumprod[timesteps].view(-1, 1, 1, 1).to(x_t.dtype)
            out = a.sqrt() * out + (1 - a).sqrt() * x_t
        return out

    def _time_ids(self, x_t: torch.Tensor) -> torch.Tensor:
        """SDXL's size conditioning (original size, crop 0, target size), made once per latent size: creating it
        from Python numbers inside a forward would copy to the GPU on every call and break CUDA-graph capture."""
        key = (tuple(x_t.shape[-2:]), x_t.dtype, x_t.device)
        if key not in self._size_ids:
            height, width = (s * self.vae_scale_factor for s in x_t.shape[-2:])
            self._size_ids[key] = torch.tensor(
                [height, width, 0, 0, height, width], device=x_t.device, dtype=x_t.dtype
            )
        return self._size_ids[key]

    def latent_shape(self, resolution: int | None = None) -> tuple[int, int, int]:
        size = self.unet.config.sample_size
        if resolution is not None:
            size = max(1, resolution // self.vae_scale_factor)
        size = size if isinstance(size, int) else size[0]
        return (self.unet.config.in_channels, size, size)

    def vocabulary(self) -> list[str]:
        return tokenizer_words(self.tokenizer)

    def fingerprint(self) -> str:
        return weights_fingerprint(self.unet)

    # -- encoding ---------------------------------------------------------------------------------------------
    def _encode(self, prompts: list[str], zero_empty: bool) -> Conditioning:
        tokens = tokenize(self.tokenizer, prompts)
        lengths = tokens["attention_mask"].sum(1) if "attention_mask" in tokens else None
        if self.arch != "sdxl":
            out = run_text_encoder(self.text_encoder, tokens, penultimate=False)
            return Conditioning(out[0].float().to(self.device), None, lengths)
        # SDXL: penultimate hidden states of both encoders side by side, pooled from the second (diffusers' SDXL pipeline).
        out_1 = run_text_encoder(self.text_encoder, tokens, penultimate=True)
        out_2 = run_text_encoder(self.text_encoder_2, tokenize(self.tokenizer_2, prompts), penultimate=True)
        context = torch.cat([out_1.hidden_states[-2], out_2.hidden_states[-2]], dim=-1).float().to(self.device)
        pooled = out_2[0].float().to(self.device)
        if zero_empty:
            empty = torch.tensor([p == "" for p in prompts], device=self.device)
            context = torch.where(empty[:, None, None], torch.zeros_like(context), context)
            pooled = torch.where(empty[:, None], torch.zeros_like(pooled), pooled)
        return Conditioning(context, pooled, lengths)


def _alphas_cumprod(scheduler: Any) -> torch.Tensor:
    values = getattr(scheduler, "alphas_cumprod", None)
    if values is None:
        from diffusers import DDPMScheduler

        values = DDPMScheduler.from_config(scheduler.config).alphas_cumprod
    return torch.as_tensor(values, dtype=torch.float32)


def load_diffusers_model(
    path: str | Path,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    config: str | Path | None = None,
    prediction_type: str | None = None,
) -> DiffusersBackend:
    """Load a diffusers folder (with `model_index.json`) or a single-file SD checkpoint, from local files only.

    Args:
        path: the folder or the `.safetensors` / `.ckpt` file.
        device, dtype: where the model runs.
        config: for single files, a local diffusers folder of the same architecture to take configs and
            tokenizers from (a single file carries none; without it the ones this package ships are used).
        prediction_type: "epsilon" or "v_prediction" where the files do not say it right (an SD2.x 512 base
            model as a single file, read as the usual 768 v-prediction one otherwise).
    """
    import diffusers

    path = Path(path)
    if not path.exists():
        raise ModelError(
            f"Model not found: {path}. Give a diffusers folder (with model_index.json) or a .safetensors file."
        )
    try:
        if path.is_dir():
            if not (path / "model_index.json").is_file():
                raise ModelError(
                    f"{path} is a folder without model_index.json, so it is not a diffusers model folder. "
                    "Point --model at the folder that holds model_index.json, or at a single .safetensors checkpoint."
                )
            with warnings.catch_warnings():  # newer diffusers renames torch_dtype; the old name works everywhere
                warnings.filterwarnings("ignore", message=".*torch_dtype.*")
                pipe = diffusers.DiffusionPipeline.from_pretrained(path, torch_dtype=dtype, local_files_only=True)
        else:
            if path.suffix not in (".safetensors", ".ckpt"):
                raise ModelError(f"{path.name} is not a .safetensors or .ckpt checkpoint.")
            if path.suffix == ".ckpt":
                raise ModelError(
                    f"{path.name} is a pickled .ckpt file; this tool never loads pickles. Convert it to .safetensors first."
                )
            pipe = _load_single_file(diffusers, path, dtype, config)
    except ModelError:
        raise
    except Exception as exc:  # diffusers raises many types for unreadable files; say which file and why
        raise ModelError(f"Could not load the model at {path}: {exc}") from exc
    if prediction_type is not None:
        pipe.scheduler.register_to_config(prediction_type=prediction_type)
    if not hasattr(pipe, "unet") or getattr(pipe, "text_encoder", None) is None:
        raise ModelError(
            f"{path} is a {type(pipe).__name__}, not a Stable Diffusion pipeline with a UNet and a text encoder."
        )
    pipe.to(device)
    return DiffusersBackend.from_pipeline(pipe, name=path.stem if path.is_file() else path.name)


def _load_single_file(diffusers: Any, path: Path, dtype: torch.dtype, config: str | Path | None) -> Any:
    """A single-file checkpoint with no network: the configs and tokenizers come from `config` (a diffusers folder
    of the same architecture) or, by default, from the ones this package ships (`erasure_core/single_file.py`)."""
    from safetensors import safe_open

    from ..single_file import ARCHITECTURES, detect_architecture, write_config_folder

    with safe_open(str(path), framework="pt") as f:
        keys = list(f.keys())
        conv_in = "model.diffusion_model.input_blocks.0.0.weight"
        in_channels = f.get_slice(conv_in).get_shape()[1] if conv_in in keys else None
    try:
        arch = detect_architecture(keys, in_channels)
    except ModelError as exc:
        raise ModelError(f"{path.name}: {exc}") from None
    pipeline_cls = getattr(diffusers, ARCHITECTURES[arch]["pipeline"])
    # a v-prediction SDXL fine-tune (e.g. NoobAI-XL v-pred) marks itself with a `v_pred` tensor, as ComfyUI reads it
    prediction = "v_prediction" if "v_pred" in keys else None
    try:
        with tempfile.TemporaryDirectory(prefix="erasure-configs-") as shipped, warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*torch_dtype.*")
            folder = config if config is not None else write_config_folder(arch, Path(shipped), prediction)
            pipe = pipeline_cls.from_single_file(
                str(path), config=str(folder), torch_dtype=dtype, local_files_only=True
            )
    except Exception as exc:
        raise ModelError(
            f"Could not load the single-file checkpoint {path.name} ({arch}) offline: {exc}. If it is not a plain "
            f"{arch.upper()} text-to-image model, pass a local diffusers folder of its architecture as `config` "
            "(CLI: --config-dir), or use a diffusers folder instead."
        ) from exc
    return pipe
