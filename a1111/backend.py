"""The engine's `Backend` over the model an A1111 or Forge WebUI has loaded (`shared.sd_model`); no second copy.

Both WebUIs encode prompts with `sd_model.get_learned_conditioning` (emphasis, textual-inversion embeddings and
clip skip as their samplers apply them) and name UNet modules the ldm way (`input_blocks.1.1.transformer_blocks.0.
attn2.to_k`), which are written as kohya keys directly. They differ in how the UNet runs:
- A1111 1.x: `sd_model.apply_model(x_t, t, cond)` at DDPM timesteps (its hijack casts inputs and autocasts); it
  returns eps, or v where `sd_model.parameterization == "v"` (SD2-v).
- Forge (2025 main line): the UNet sits in a ComfyUI-style patcher (`sd_model.forge_objects.unet`) whose `KModel` is
  a sigma-space denoiser over weights built in inference mode, handled by `erasure_core.backends.kdiffusion`.

Nothing here imports the WebUI: `host.py` passes its objects in, so tests run against fakes of them.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import nn

from erasure_core import ModelError
from erasure_core.backends.base import Conditioning, UnetPlacement, weights_fingerprint
from erasure_core.backends.diffusers_backend import tokenizer_words
from erasure_core.backends.kdiffusion import (
    alphas_from_sigmas,
    eps_from_denoiser,
    make_autograd_safe,
    saved_activations_copied,
)

SDXL_POOLED_WIDTH = 1280  # CLIP-G's pooled text opens SDXL's ADM vector; the rest encodes image sizes
SDXL_CONTEXT_WIDTH = 2048  # CLIP-L and CLIP-G side by side; the SDXL refiner has CLIP-G alone (1280)
_CHUNK = 77  # one CLIP chunk; longer prompts are cut to it, so every encoding in a run has one width
_ENCODE_BATCH = 64
_NATIVE_RESOLUTION = {"sd1": 512, "sd2": 512, "sdxl": 1024}
_FLAGS = (("sdxl", "is_sdxl"), ("sd2", "is_sd2"), ("sd1", "is_sd1"))  # the WebUIs' own model flags
_REFUSED = {"flux": "Flux", "chroma": "Chroma", "sd3": "SD3", "stablediffusion3": "SD3", "cascade": "Stable Cascade"}


class SizedPrompts(list):
    """A prompt batch as the WebUIs' SDXL text path reads it: a list with the image size as attributes."""

    def __init__(self, prompts: Sequence[str], width: int, height: int) -> None:
        super().__init__(prompts)
        self.width, self.height = width, height
        self.is_negative_prompt = False  # never the zeroed unconditional: UCE's guide "" needs its real encoding


def webui_architecture(sd_model: Any) -> str:
    """'sd1' / 'sd2' / 'sdxl' for the WebUI's loaded model, or a `ModelError` that names what is loaded instead."""
    if sd_model is None:
        raise ModelError(
            "No model is loaded in the WebUI. Choose a Stable Diffusion checkpoint at the top of the page and wait "
            "until it has loaded, then start again."
        )
    kind = type(sd_model).__name__
    label = next((name for key, name in _REFUSED.items() if key in kind.lower()), None)
    if getattr(sd_model, "is_sd3", False):
        label = "SD3"
    arch = None
    if label is None:
        arch = next((a for a, flag in _FLAGS if getattr(sd_model, flag, False)), None)
    if arch is None:
        raise ModelError(
            f"Concept erasure supports Stable Diffusion 1.x, 2.x and SDXL UNets; the loaded model is "
            f"{label or 'not one of them'} ({kind}). Load an SD1.5, SD2.x or SDXL checkpoint."
        )
    if getattr(sd_model, "is_sdxl_inpaint", False) or getattr(sd_model, "is_inpaint", False):
        raise ModelError("The loaded model is an inpainting model; load the base (non-inpainting) checkpoint.")
    key = getattr(getattr(sd_model, "model", None), "conditioning_key", "crossattn")
    if arch != "sdxl" and key not in ("crossattn", None):
        raise ModelError(
            f"The loaded model is conditioned on images as well as text ('{key}': inpainting, depth or "
            "instruct-pix2pix); load a text-to-image checkpoint."
        )
    return arch


class _Vocabulary:
    """open_clip's tokenizer keeps its vocabulary in `.encoder`; `tokenizer_words` reads `get_vocab()`."""

    def __init__(self, encoder: dict[str, int]) -> None:
        self._encoder = encoder

    def get_vocab(self) -> dict[str, int]:
        return dict(self._encoder)


class WebUIBackend(UnetPlacement):
    """What both WebUIs share: text through `get_learned_conditioning`, SDXL's size vector, names and schedule."""

    module_naming = "ldm"
    unet: nn.Module
    alphas_cumprod: torch.Tensor

    def __init__(self, sd_model: Any, unet: nn.Module, name: str | None = None) -> None:
        self.sd_model = sd_model
        self.arch = webui_architecture(sd_model)
        self.unet = unet
        info = getattr(sd_model, "sd_checkpoint_info", None)
        self.name = name or getattr(info, "name_for_extra", None) or type(sd_model).__name__
        self._sizes: dict[tuple[int, int], torch.Tensor] = {}
        if self.arch == "sdxl" and self.context_width() != SDXL_CONTEXT_WIDTH:
            raise ModelError(
                "The loaded model is an SDXL refiner (one text encoder); erase from the SDXL base model instead."
            )

    # -- Backend attributes -----------------------------------------------------------------------------------
    @property
    def v_prediction(self) -> bool:
        return False

    def context_width(self) -> int:
        """Width of the text states the cross-attention takes (the first attn2.to_k's input features)."""
        for name, module in self.unet.named_modules():
            if name.endswith("attn2.to_k"):
                return int(module.weight.shape[1])
        raise ModelError("The loaded UNet has no cross-attention ('attn2.to_k'), so text does not steer it.")

    def latent_shape(self, resolution: int | None = None) -> tuple[int, int, int]:
        if resolution is None:
            resolution = 768 if self.arch == "sd2" and self.v_prediction else _NATIVE_RESOLUTION[self.arch]
        channels = int(getattr(self.sd_model, "latent_channels", None) or getattr(self.unet, "in_channels", 4))
        return (channels, resolution // 8, resolution // 8)

    def fingerprint(self) -> str:
        return weights_fingerprint(self.unet)

    # -- text -------------------------------------------------------------------------------------------------
    def encode_prompts(self, prompts: Sequence[str]) -> Conditioning:
        prompts = list(prompts)
        parts = [self._encode_batch(prompts[i : i + _ENCODE_BATCH]) for i in range(0, len(prompts), _ENCODE_BATCH)]
        return Conditioning.cat(parts)

    def _learned_conditioning(self, prompts: SizedPrompts) -> Any:
        return self.sd_model.get_learned_conditioning(prompts)

    def _encode_batch(self, prompts: list[str]) -> Conditioning:
        size = _NATIVE_RESOLUTION[self.arch]
        with torch.inference_mode(False), torch.no_grad():
            out = self._learned_conditioning(SizedPrompts(prompts, size, size))
            # Forge encodes in inference mode: clone into ordinary tensors; cut every prompt to its first chunk.
            if isinstance(out, dict):
                context = out["crossattn"][:, :_CHUNK].clone()
                pooled = out["vector"][:, :SDXL_POOLED_WIDTH].clone()
            else:
                context, pooled = out[:, :_CHUNK].clone(), None
        lengths = torch.tensor([min(self._token_count(p), _CHUNK - 2) + 2 for p in prompts])
        device = self.device
        return Conditioning(
            context.to(device, torch.float32),
            None if pooled is None else pooled.to(device, torch.float32),
            lengths,
        )

    def _text_engine(self) -> Any:
        """The object whose `process_texts` tokenizes as the WebUI does (Forge's engine, A1111's text model)."""
        for name in ("text_processing_engine", "text_processing_engine_l", "cond_stage_model"):
            engine = getattr(self.sd_model, name, None)
            if engine is not None and hasattr(engine, "process_texts"):
                return engine
        raise ModelError("The loaded model's text encoder cannot tokenize prompts; it is not an SD1/SD2/SDXL model.")

    def _token_count(self, prompt: str) -> int:
        """Real tokens of the prompt without start and end tokens (UCE reads the last one)."""
        return int(self._text_engine().process_texts([prompt])[1])

    def size_vector(self, height: int, width: int) -> torch.Tensor:
        """SDXL: the image-size part of the ADM vector for a `height` x `width` image, as the WebUI encodes it."""
        key = (height, width)
        if key not in self._sizes:
            with torch.inference_mode(False), torch.no_grad():
                vector = self._learned_conditioning(SizedPrompts([""], width, height))["vector"]
                self._sizes[key] = vector[:, SDXL_POOLED_WIDTH:].clone().to(self.device, torch.float32)
        return self._sizes[key]

    def _adm(self, cond: Conditioning, x_t: torch.Tensor) -> torch.Tensor:
        """SDXL's ADM vector: the prompts' pooled text and the size of the latents being denoised."""
        size = self.size_vector(x_t.shape[-2] * 8, x_t.shape[-1] * 8)
        return torch.cat([cond.pooled, size.expand(cond.pooled.shape[0], -1)], dim=1)

    def vocabulary(self) -> list[str]:
        engine = self._text_engine()
        tokenizer = getattr(engine, "tokenizer", None)
        if tokenizer is None:
            embedders = getattr(engine, "embedders", ())  # A1111 SDXL: the conditioner's CLIP-L wrapper has it
            tokenizer = next((e.tokenizer for e in embedders if hasattr(e, "tokenizer")), None)
        if tokenizer is None:  # A1111 SD2 tokenizes with open_clip's module-level tokenizer
            try:
                import open_clip.tokenizer

                tokenizer = _Vocabulary(open_clip.tokenizer._tokenizer.encoder)
            except (ImportError, AttributeError):
                tokenizer = None
        if tokenizer is None or not hasattr(tokenizer, "get_vocab"):
            raise ModelError(
                "The loaded model's tokenizer exposes no vocabulary; give EAP/AGE an explicit vocabulary."
            )
        return tokenizer_words(tokenizer)


class A1111Backend(WebUIBackend):
    """AUTOMATIC1111 1.x: the UNet is `sd_model.model.diffusion_model`, predictions come from `sd_model.apply_model`."""

    def __init__(self, sd_model: Any, name: str | None = None) -> None:
        super().__init__(sd_model, sd_model.model.diffusion_model, name)
        self.alphas_cumprod = torch.as_tensor(sd_model.alphas_cumprod).to(self.device, torch.float32)

    @property
    def v_prediction(self) -> bool:
        return getattr(self.sd_model, "parameterization", "eps") == "v"

    def predict_noise(self, x_t: torch.Tensor, timesteps: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        if self.arch == "sdxl":
            conditioning: Any = {"crossattn": cond.context, "vector": self._adm(cond, x_t)}
        else:
            conditioning = {"c_crossattn": [cond.context]}  # a fresh dict: the WebUI casts its values in place
        out = self.sd_model.apply_model(x_t, timesteps, conditioning).to(x_t.dtype)
        if self.v_prediction:
            a = self.alphas_cumprod[timesteps].view(-1, 1, 1, 1).to(x_t.dtype)
            out = a.sqrt() * out + (1 - a).sqrt() * x_t
        return out


class ForgeBackend(WebUIBackend):
    """Forge: the UNet patcher of `sd_model.forge_objects`, loaded by Forge's memory manager, sigma-space KModel."""

    def __init__(
        self, sd_model: Any, load_model_gpu: Callable[[Any], Any], name: str | None = None, clip_skip: int = 1
    ) -> None:
        patcher = sd_model.forge_objects.unet
        self._load = lambda: load_model_gpu(patcher)
        self._load()
        self.kmodel = patcher.model
        super().__init__(sd_model, self.kmodel.diffusion_model, name)
        make_autograd_safe(self.unet)
        self.sigmas = self.kmodel.predictor.sigmas.to(self.device, torch.float32)
        self.alphas_cumprod = alphas_from_sigmas(self.sigmas)
        self._clip_skip = clip_skip
        self._loaded_on = self.device

    @property
    def v_prediction(self) -> bool:
        return getattr(self.kmodel.predictor, "prediction_type", "eps") in ("v", "v_prediction")

    def _learned_conditioning(self, prompts: SizedPrompts) -> Any:
        if hasattr(self.sd_model, "set_clip_skip"):
            self.sd_model.set_clip_skip(self._clip_skip)
        out = self.sd_model.get_learned_conditioning(prompts)  # loads the text encoder, which may offload the UNet
        self._check_unet_loaded()
        return out

    def _check_unet_loaded(self) -> None:
        device = getattr(self, "_loaded_on", None)  # None while __init__ runs
        if device is not None and device.type != "cpu" and self.device != device:
            raise ModelError(
                f"Forge moved the UNet to {self.device} to make room for the text encoder, so there is not enough GPU "
                "memory to train with both loaded. Close other models, or use the 'esd' method (no vocabulary search)."
            )

    def predict_noise(self, x_t: torch.Tensor, timesteps: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        kwargs = {"y": self._adm(cond, x_t)} if self.arch == "sdxl" else {}
        # Forge's transformer blocks add to activations in place; a forward that will be differentiated keeps copies
        copies = saved_activations_copied() if torch.is_grad_enabled() else contextlib.nullcontext()
        with copies:
            return eps_from_denoiser(
                self.kmodel.apply_model, self.sigmas, x_t, timesteps, c_crossattn=cond.context, **kwargs
            )


def is_forge(sd_model: Any) -> bool:
    return hasattr(sd_model, "forge_objects")


def loaded_unet(sd_model: Any) -> nn.Module:
    """The checkpoint's UNet as loaded (Forge: the unpatched one), without borrowing it for a run."""
    webui_architecture(sd_model)
    if is_forge(sd_model):
        return sd_model.forge_objects_original.unet.model.diffusion_model
    return sd_model.model.diffusion_model


def weights_sha256(module: nn.Module) -> str:
    """A hash of every byte of every weight: equal exactly when the weights are bit-identical."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


@contextlib.contextmanager
def borrowed_model(
    sd_model: Any,
    active_networks: list | None = None,
    load_model_gpu: Callable[[Any], Any] | None = None,
    clip_skip: int = 1,
) -> Iterator[WebUIBackend]:
    """The loaded model as a `Backend` for one run, handed back as it was (the trainer removes its LoRA layers).

    The erasure trains on the checkpoint itself, not on LoRAs a previous generation applied: A1111 merges active
    LoRAs into the weights and restores them lazily once `active_networks` (its Lora extension's list) no longer
    names them, so the list is emptied for the run and put back after; Forge keeps patched clones, so the run uses
    its unpatched `forge_objects_original`. Which parameters want gradients is restored too.
    """
    webui_architecture(sd_model)  # refuse before anything is touched
    if getattr(sd_model, "lowvram", False):  # A1111 sets it for --medvram, --medvram-sdxl and --lowvram
        raise ModelError(
            "The WebUI runs with --medvram or --lowvram, which moves parts of the model between the GPU and the CPU "
            "during every step; training needs the whole UNet on one device. Restart the WebUI without them."
        )
    saved_networks = list(active_networks) if active_networks is not None else None
    saved_objects = getattr(sd_model, "forge_objects", None)
    flags: dict[nn.Parameter, bool] = {}
    try:
        if active_networks is not None:
            active_networks.clear()
        if is_forge(sd_model):
            if load_model_gpu is None:
                raise ModelError("Forge's memory manager was not found; this Forge version is not supported.")
            sd_model.forge_objects = sd_model.forge_objects_original.shallow_copy()
            backend: WebUIBackend = ForgeBackend(sd_model, load_model_gpu, clip_skip=clip_skip)
        else:
            backend = A1111Backend(sd_model)
        flags = {p: p.requires_grad for p in backend.unet.parameters()}
        backend.unet.requires_grad_(False)
        yield backend
    finally:
        for param, wanted in flags.items():
            param.requires_grad_(wanted)
        if saved_networks is not None:
            active_networks[:] = saved_networks
        if saved_objects is not None:
            sd_model.forge_objects = saved_objects
