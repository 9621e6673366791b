"""The engine's `Backend` over a ComfyUI MODEL (ModelPatcher) and CLIP: training on the model the user loaded.

Facts this adapter relies on (hosts.md §2-3, checked against ComfyUI 0.3.64):
- `apply_model(x, sigma, c_crossattn=..., y=...)` is a k-diffusion denoiser, and the weights ComfyUI loaded under
  `torch.inference_mode()` are inference tensors: `erasure_core.backends.kdiffusion` handles both, for Forge too.
- UNet module names are ldm paths (`input_blocks.1.1.transformer_blocks.0.attn2.to_k`), written as kohya keys
  directly (hosts.md §5.3: every loader accepts them).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import comfy.model_management as mm
import torch
from torch import nn

from ..erasure_core import ModelError
from ..erasure_core.backends.base import Conditioning, weights_fingerprint
from ..erasure_core.backends.diffusers_backend import tokenizer_words
from ..erasure_core.backends.kdiffusion import alphas_from_sigmas, eps_from_denoiser, make_autograd_safe
from .architectures import model_architecture

_ENCODE_BATCH = 64


class ComfyBackend:
    """A `Backend` over a loaded ComfyUI MODEL and its CLIP. Call `load()` before training."""

    module_naming = "ldm"

    def __init__(self, model: Any, clip: Any, name: str = "ComfyUI model") -> None:
        if clip is None:
            raise ModelError("No CLIP is connected; connect the CLIP output of the checkpoint loader to 'clip'.")
        self.patcher = model
        self.clip = clip
        self.name = name
        self.arch = model_architecture(model)
        self.base = model.model
        self.unet: nn.Module = self.base.diffusion_model

    # -- device and schedule -------------------------------------------------------------------------------
    def load(self) -> None:
        """Put the UNet on ComfyUI's device (fully: training touches every layer) and make it trainable."""
        mm.load_models_gpu([self.patcher], force_full_load=True)
        make_autograd_safe(self.unet)
        self.device = self.patcher.load_device
        self.dtype = self.base.get_dtype()
        sampling = self.base.model_sampling
        self.sigmas = sampling.sigmas.to(self.device, torch.float32)
        self.alphas_cumprod = alphas_from_sigmas(self.sigmas)
        self.transformer_options = dict(self.patcher.model_options.get("transformer_options", {}))

    def latent_shape(self, resolution: int | None = None) -> tuple[int, int, int]:
        if resolution is None:
            resolution = {"sd1": 512, "sd2": 768 if self._is_v_prediction() else 512, "sdxl": 1024}[self.arch]
        channels = self.base.latent_format.latent_channels
        return (channels, resolution // 8, resolution // 8)

    def _is_v_prediction(self) -> bool:
        return "V_PREDICTION" in [c.__name__ for c in type(self.base.model_sampling).__mro__]

    # -- text ---------------------------------------------------------------------------------------------
    def _tokenize(self, prompt: str) -> dict[str, list]:
        return self.clip.tokenize(prompt)

    def encode_prompts(self, prompts: Sequence[str]) -> Conditioning:
        """Encode as CLIPTextEncode would, in batches of single-chunk unweighted prompts where possible."""
        prompts = list(prompts)
        parts = []
        for start in range(0, len(prompts), _ENCODE_BATCH):
            parts.append(self._encode_batch(prompts[start : start + _ENCODE_BATCH]))
        return Conditioning.cat(parts)

    def _encode_batch(self, prompts: list[str]) -> Conditioning:
        tokens = [self._tokenize(p) for p in prompts]
        lengths = torch.tensor([self._length(t) for t in tokens])
        simple = all(
            len(sections) == 1 and all(pair[1] == 1.0 for pair in sections[0])
            for t in tokens
            for sections in t.values()
        )
        with torch.inference_mode(False), torch.no_grad():
            if simple:
                context, pooled = self._encode_batched(tokens)
            else:  # weighted or long prompts: one at a time through ComfyUI's own path, first 77 tokens kept
                pairs = [self.clip.encode_from_tokens(t, return_pooled=True) for t in tokens]
                width = min(c.shape[1] for c, _ in pairs)
                context = torch.cat([c[:, :width] for c, _ in pairs])
                pooled = torch.cat([p for _, p in pairs]) if pairs[0][1] is not None else None
        self._check_still_loaded()
        context = context.clone().to(self.device, torch.float32)
        if self.arch != "sdxl":
            pooled = None
        elif pooled is not None:
            pooled = pooled.clone().to(self.device, torch.float32)
        return Conditioning(context, pooled, lengths)

    def _check_still_loaded(self) -> None:
        """Loading the text encoder may make ComfyUI offload the UNet on a small GPU; training must not go on then."""
        device = getattr(self, "device", None)
        if device is None:
            return
        weight = next(self.unet.parameters())
        if weight.device != torch.device(device) and torch.device(device).type != "cpu":
            raise ModelError(
                f"ComfyUI moved the UNet to {weight.device} to make room for the text encoder, so there is not "
                "enough GPU memory to train with both loaded. Close other models, start ComfyUI with --highvram, "
                "or use a smaller vocabulary_limit / the 'esd' method (no vocabulary search)."
            )

    def _encode_batched(self, tokens: list[dict[str, list]]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Every text encoder of the CLIP object on the whole batch at once (ComfyUI's path encodes one prompt)."""
        stage = self.clip.cond_stage_model
        stage.reset_clip_options()
        if self.clip.layer_idx is not None:
            stage.set_clip_options({"layer": self.clip.layer_idx})
        self.clip.load_model()
        outputs: dict[str, tuple[torch.Tensor, torch.Tensor | None]] = {}
        for key in tokens[0]:
            encoder = getattr(stage, f"clip_{key}", None) or getattr(stage, key, None)
            if encoder is None:
                raise ModelError(f"This CLIP has no encoder named '{key}'; it is not an SD1/SD2/SDXL text encoder.")
            batch = [[pair[0] for pair in t[key][0]] for t in tokens]
            out, pooled = encoder.encode(batch)[:2]
            outputs[key] = (out.float(), None if pooled is None else pooled.float())
        if set(outputs) == {"g", "l"}:  # SDXL: CLIP-L and CLIP-G side by side, pooled from CLIP-G
            l_out, g_out = outputs["l"][0], outputs["g"][0]
            width = min(l_out.shape[1], g_out.shape[1])
            return torch.cat([l_out[:, :width], g_out[:, :width]], dim=-1), outputs["g"][1]
        ((out, pooled),) = outputs.values()
        return out, pooled

    @staticmethod
    def _main_key(tokens: dict[str, list]) -> str:
        """The encoder whose tokens count: CLIP-L where there is one (SD1, SDXL), else the only one (SD2's 'h')."""
        return "l" if "l" in tokens else next(iter(tokens))

    def _length(self, tokens: dict[str, list]) -> int:
        """Real token count of the first chunk (start and end token included), for UCE's last subject token."""
        key = self._main_key(tokens)
        tokenizer = self._sub_tokenizer(key)
        ids = [pair[0] for pair in tokens[key][0]]
        end = getattr(tokenizer, "end_token", None)
        return ids.index(end) + 1 if end in ids else len(ids)

    def _sub_tokenizer(self, key: str) -> Any:
        outer = self.clip.tokenizer
        return getattr(outer, f"clip_{key}", None) or getattr(outer, key, None) or outer

    def vocabulary(self) -> list[str]:
        inner = getattr(self._sub_tokenizer(self._main_key(self._tokenize("a"))), "tokenizer", None)
        if inner is None or not hasattr(inner, "get_vocab"):
            raise ModelError("This CLIP's tokenizer exposes no vocabulary; give EAP/AGE an explicit vocabulary.")
        return tokenizer_words(inner)

    # -- UNet ---------------------------------------------------------------------------------------------
    def predict_noise(self, x_t: torch.Tensor, timesteps: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        kwargs: dict[str, Any] = {}
        if self.arch == "sdxl":
            h, w = x_t.shape[-2] * 8, x_t.shape[-1] * 8
            kwargs["y"] = self.base.encode_adm(
                pooled_output=cond.pooled, width=w, height=h, target_width=w, target_height=h
            ).to(x_t.device)
        return eps_from_denoiser(
            self.base.apply_model,
            self.sigmas,
            x_t,
            timesteps,
            c_crossattn=cond.context,
            transformer_options=dict(self.transformer_options),
            **kwargs,
        )

    def kohya_aliases(self) -> dict[str, str]:
        """Every kohya prefix ComfyUI maps to one of our layers (diffusers- and ldm-style names), from its key map."""
        import comfy.lora

        out: dict[str, str] = {}
        for key, target in comfy.lora.model_lora_keys_unet(self.base, {}).items():
            if isinstance(target, str) and key.startswith("lora_unet_") and target.startswith("diffusion_model."):
                out[key] = target[len("diffusion_model.") : -len(".weight")]
        return out

    def fingerprint(self) -> str:
        return weights_fingerprint(self.unet)
