"""Fakes of the few A1111 / Forge objects the adapter touches, for CI (the real hosts are tested in test_real_webui).

A tiny UNet with the ldm module names both WebUIs use, a text model that encodes words deterministically, and the
two ways the WebUIs expose them: A1111's `sd_model` (`model.diffusion_model`, `apply_model` at DDPM timesteps,
`alphas_cumprod`, a LoRA extension that merges networks into the weights) and Forge's (`forge_objects` with a
patcher around a sigma-space `KModel`, weights and text encodings made in inference mode).
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import torch
from torch import nn
from torch.nn import functional as F

from erasure_core.testing import WORDS

CONTEXT_WIDTH = {"sd1": 32, "sd2": 48, "sdxl": 2048}
POOLED, SIZE_FEATURES = 1280, 6 * 8  # SDXL's ADM vector: pooled CLIP-G text, then 6 size numbers x 8 features
TOKENS = 77


def ddpm_alphas() -> torch.Tensor:
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    return torch.cumprod(1 - betas, 0).float()


# -- a UNet with ldm names ------------------------------------------------------------------------------------
class CrossAttention(nn.Module):
    def __init__(self, dim: int, context_dim: int) -> None:
        super().__init__()
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(context_dim, dim, bias=False)
        self.to_v = nn.Linear(context_dim, dim, bias=False)
        self.to_out = nn.Sequential(nn.Linear(dim, dim), nn.Dropout(0.0))

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        context = x if context is None else context
        q, k, v = self.to_q(x), self.to_k(context), self.to_v(context)
        return self.to_out(F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None])[:, 0])


class BasicTransformerBlock(nn.Module):
    def __init__(self, dim: int, context_dim: int) -> None:
        super().__init__()
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn1 = CrossAttention(dim, dim)
        self.attn2 = CrossAttention(dim, context_dim)
        self.ff = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    inplace = False  # Forge's blocks add to the activations in place (`x += n`), as code written for sampling may

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        x = x + self.attn1(self.norm1(x))
        if self.inplace:
            x += self.attn2(self.norm2(x), context)
        else:
            x = x + self.attn2(self.norm2(x), context)
        return x + self.ff(self.norm3(x))


class SpatialTransformer(nn.Module):
    def __init__(self, channels: int, context_dim: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(8, channels)
        self.proj_in = nn.Conv2d(channels, channels, 1)
        self.transformer_blocks = nn.ModuleList([BasicTransformerBlock(channels, context_dim)])
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        tokens = self.proj_in(self.norm(x)).flatten(2).transpose(1, 2)
        for block in self.transformer_blocks:
            tokens = block(tokens, context)
        return x + self.proj_out(tokens.transpose(1, 2).reshape(b, c, h, w))


class ResBlock(nn.Module):
    def __init__(self, channels: int, out_channels: int, emb: int) -> None:
        super().__init__()
        self.in_layers = nn.Sequential(
            nn.GroupNorm(8, channels), nn.SiLU(), nn.Conv2d(channels, out_channels, 3, 1, 1)
        )
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb, out_channels))
        self.out_layers = nn.Sequential(
            nn.GroupNorm(8, out_channels), nn.SiLU(), nn.Dropout(0.0), nn.Conv2d(out_channels, out_channels, 3, 1, 1)
        )
        self.skip_connection = nn.Identity() if channels == out_channels else nn.Conv2d(channels, out_channels, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.in_layers(x) + self.emb_layers(emb)[:, :, None, None]
        return self.skip_connection(x) + self.out_layers(h)


class Block(nn.ModuleList):
    """ldm's TimestepEmbedSequential: children indexed 0, 1, ... each fed what it takes."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        for layer in self:
            if isinstance(layer, ResBlock):
                x = layer(x, emb)
            elif isinstance(layer, SpatialTransformer):
                x = layer(x, context)
            else:
                x = layer(x)
        return x


class TinyLdmUNet(nn.Module):
    """input_blocks / middle_block / output_blocks / time_embed / label_emb / out, as ldm and sgm name them."""

    def __init__(self, context_dim: int, adm: int | None = None, channels: int = 16) -> None:
        super().__init__()
        emb = 2 * channels
        self.in_channels, self.model_channels = 4, channels
        self.time_embed = nn.Sequential(nn.Linear(channels, emb), nn.SiLU(), nn.Linear(emb, emb))
        if adm is not None:
            self.label_emb = nn.Sequential(nn.Sequential(nn.Linear(adm, emb), nn.SiLU(), nn.Linear(emb, emb)))
        self.input_blocks = nn.ModuleList(
            [
                Block([nn.Conv2d(4, channels, 3, 1, 1)]),
                Block([ResBlock(channels, channels, emb), SpatialTransformer(channels, context_dim)]),
            ]
        )
        self.middle_block = Block([ResBlock(channels, channels, emb), SpatialTransformer(channels, context_dim)])
        self.output_blocks = nn.ModuleList(
            [Block([ResBlock(2 * channels, channels, emb), SpatialTransformer(channels, context_dim)])]
        )
        self.out = nn.Sequential(nn.GroupNorm(8, channels), nn.SiLU(), nn.Conv2d(channels, 4, 3, 1, 1))
        with torch.no_grad():  # a random model whose outputs depend on the text enough to be erased in a few steps
            for p in self.parameters():
                p.mul_(2.0)

    def forward(
        self, x: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor, y: torch.Tensor | None = None
    ) -> torch.Tensor:
        half = self.model_channels // 2
        freqs = torch.exp(-math.log(10000) * torch.arange(half, device=x.device) / half)
        angles = timesteps.float()[:, None] * freqs[None]
        emb = self.time_embed(torch.cat([angles.cos(), angles.sin()], dim=1))
        if y is not None:
            emb = emb + self.label_emb(y)
        skips = []
        h = x
        for block in self.input_blocks:
            h = block(h, emb, context)
            skips.append(h)
        h = self.middle_block(h, emb, context)
        for block in self.output_blocks:
            h = block(torch.cat([h, skips.pop()], dim=1), emb, context)
        return self.out(h)


# -- text ---------------------------------------------------------------------------------------------------
class FakeTokenizer:
    def __init__(self, words: list[str]) -> None:
        self.ids = {w: i + 3 for i, w in enumerate(words)}

    def get_vocab(self) -> dict[str, int]:
        return {f"{w}</w>": i for w, i in self.ids.items()} | {"<|startoftext|>": 1, "<|endoftext|>": 2, "ing": 0}


class FakeTextModel(nn.Module):
    """Encodes each word with a fixed random vector (unknown words by hashing): text the UNet can tell apart."""

    def __init__(self, width: int, pooled: int | None = None, words: list[str] = WORDS) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(7)
        self.vocab = self.tokenizer = FakeTokenizer(list(words))
        self.table = nn.Parameter(torch.randn(len(words) + 512, width, generator=generator), requires_grad=False)
        self.position = nn.Parameter(torch.randn(TOKENS, width, generator=generator) * 0.1, requires_grad=False)
        self.pooled_projection = None
        if pooled is not None:
            self.pooled_projection = nn.Parameter(torch.randn(width, pooled, generator=generator) * 0.05)
        self.calls = 0

    def token_ids(self, text: str) -> list[int]:
        ids = self.vocab.ids
        return [ids.get(w, 3 + len(ids) + sum(map(ord, w)) % 500) for w in text.lower().split()]

    def process_texts(self, texts: list[str]) -> tuple[list, int]:
        """As the WebUIs' text engines: (chunks, the longest prompt's token count)."""
        return [[ids] for ids in map(self.token_ids, texts)], max(len(self.token_ids(t)) for t in texts)

    def encode(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor | None]:
        self.calls += 1
        rows = []
        for text in texts:
            ids = self.token_ids(text)[: TOKENS - 2]
            z = self.position.clone()
            if ids:
                z[1 : 1 + len(ids)] += self.table[ids]
            rows.append(z)
        context = torch.stack(rows)
        pooled = None if self.pooled_projection is None else context.mean(1) @ self.pooled_projection
        return context, pooled


def size_vector(width: int, height: int, n: int) -> torch.Tensor:
    """The size part of SDXL's ADM vector: original size, crop (0, 0), target size, 8 features each."""
    values = torch.tensor([height, width, 0, 0, height, width], dtype=torch.float32)
    features = torch.sin(values[:, None] / (10.0 ** torch.arange(8))).flatten()
    return features[None].repeat(n, 1)


def learned_conditioning(text: FakeTextModel, arch: str, batch: list[str]):
    context, pooled = text.encode(list(batch))
    if arch != "sdxl":
        return context
    size = size_vector(getattr(batch, "width", 1024) or 1024, getattr(batch, "height", 1024) or 1024, len(batch))
    return {"crossattn": context, "vector": torch.cat([pooled, size], dim=1)}


def _unet(arch: str) -> TinyLdmUNet:
    return TinyLdmUNet(CONTEXT_WIDTH[arch], POOLED + SIZE_FEATURES if arch == "sdxl" else None)


def _flags(arch: str) -> dict[str, bool]:
    return {"is_sd1": arch == "sd1", "is_sd2": arch == "sd2", "is_sdxl": arch == "sdxl", "is_sd3": False}


# -- A1111 --------------------------------------------------------------------------------------------------
class FakeA1111Model:
    """`shared.sd_model` of A1111 1.x (LatentDiffusion for SD1/SD2, DiffusionEngine for SDXL)."""

    def __init__(self, arch: str = "sd1", v_prediction: bool = False, seed: int = 0) -> None:
        torch.manual_seed(seed)
        self.arch = arch
        self.model = nn.Module()
        self.model.diffusion_model = _unet(arch)
        self.model.conditioning_key = "crossattn"
        for param in self.model.parameters():
            param.requires_grad_(True)  # as ldm builds them; the WebUI samples under no_grad
        self.alphas_cumprod = ddpm_alphas()
        self.parameterization = "v" if v_prediction else "eps"
        self.latent_channels = 4
        self.sd_checkpoint_info = SimpleNamespace(name_for_extra=f"tiny-{arch}")
        self.__dict__.update(_flags(arch))
        text = FakeTextModel(CONTEXT_WIDTH[arch], POOLED if arch == "sdxl" else None)
        if arch == "sdxl":  # A1111 SDXL: the conditioner, whose first embedder holds the tokenizer
            text.embedders = [SimpleNamespace(tokenizer=text.tokenizer)]
            del text.tokenizer
        self.cond_stage_model = text
        self.apply_model_calls = 0

    def get_learned_conditioning(self, batch: list[str]):
        return learned_conditioning(self.cond_stage_model, self.arch, batch)

    def apply_model(self, x: torch.Tensor, t: torch.Tensor, cond) -> torch.Tensor:
        self.apply_model_calls += 1
        unet = self.model.diffusion_model
        if "c_crossattn" in cond:
            out = unet(x, t, context=torch.cat(cond["c_crossattn"], 1))
        else:
            out = unet(x, t, context=cond["crossattn"], y=cond["vector"])
        cond.clear()  # A1111's hijack rewrites the dict it was given: a caller must not reuse it
        return out


class FakeLoraExtension(SimpleNamespace):
    """A1111's built-in Lora extension module (`networks`): the active list, and the folder listing."""

    def __init__(self) -> None:
        super().__init__(loaded_networks=[], listed=0, seen_active_during_run=[])

    def list_available_networks(self) -> None:
        self.listed += 1


# -- Forge --------------------------------------------------------------------------------------------------
class FakeKModel(nn.Module):
    """Forge's KModel (ComfyUI's BaseModel): `apply_model(x, sigma, c_crossattn, y)` returns the denoised x0."""

    def __init__(self, unet: TinyLdmUNet, v_prediction: bool = False) -> None:
        super().__init__()
        self.diffusion_model = unet
        sigmas = ((1 - ddpm_alphas()) / ddpm_alphas()).sqrt()
        self.predictor = SimpleNamespace(sigmas=sigmas, prediction_type="v" if v_prediction else "eps")

    def apply_model(self, x, t, c_crossattn=None, control=None, transformer_options=None, **kwargs):
        sigma = t.float()
        timesteps = (self.predictor.sigmas[None] - sigma[:, None]).abs().argmin(1)
        x_t = x / (sigma**2 + 1).sqrt()[:, None, None, None]
        out = self.diffusion_model(x_t, timesteps, context=c_crossattn, y=kwargs.get("y"))
        s = sigma[:, None, None, None]
        if self.predictor.prediction_type == "v":
            return x / (s**2 + 1) - out * s / (s**2 + 1).sqrt()
        return x - s * out


class FakePatcher:
    def __init__(self, model: FakeKModel, patches: dict | None = None) -> None:
        self.model = model
        self.patches = patches or {}


class FakeForgeObjects(SimpleNamespace):
    def shallow_copy(self) -> FakeForgeObjects:
        return FakeForgeObjects(**vars(self))


class FakeForgeModel:
    """Forge's `shared.sd_model`: a ForgeDiffusionEngine whose objects were built in inference mode."""

    def __init__(self, arch: str = "sd1", seed: int = 0, v_prediction: bool = False) -> None:
        torch.manual_seed(seed)
        self.arch = arch
        with torch.inference_mode():
            kmodel = FakeKModel(_unet(arch), v_prediction)
        for block in kmodel.modules():
            if isinstance(block, BasicTransformerBlock):
                block.inplace = True
        text = FakeTextModel(CONTEXT_WIDTH[arch], POOLED if arch == "sdxl" else None)
        clip = SimpleNamespace(patcher="clip patcher")
        self.forge_objects_original = FakeForgeObjects(unet=FakePatcher(kmodel), clip=clip, vae=None, clipvision=None)
        lora_applied = FakePatcher(kmodel, patches={"some LoRA": 1.0})  # a clone that a generation's LoRA patched
        self.forge_objects = FakeForgeObjects(unet=lora_applied, clip=clip, vae=None, clipvision=None)
        self.forge_objects_after_applying_lora = self.forge_objects.shallow_copy()
        setattr(self, "text_processing_engine_l" if arch == "sdxl" else "text_processing_engine", text)
        self.text = text
        self.sd_checkpoint_info = SimpleNamespace(name_for_extra=f"tiny-forge-{arch}")
        self.__dict__.update(_flags(arch))
        self.clip_skip = None
        self.loaded: list[FakePatcher] = []

    def set_clip_skip(self, clip_skip: int) -> None:
        self.clip_skip = clip_skip

    @torch.inference_mode()
    def get_learned_conditioning(self, prompts: list[str]):
        return learned_conditioning(self.text, self.arch, prompts)

    def load_model_gpu(self, patcher: FakePatcher) -> None:
        """Forge's memory_management.load_model_gpu (recorded: which patcher the run loaded)."""
        self.loaded.append(patcher)


class FakeFlux:
    """A model the WebUIs can load but erasure does not support (Forge's Flux engine)."""

    is_sd1 = is_sd2 = is_sdxl = is_sd3 = False
