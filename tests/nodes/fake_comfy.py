"""Fakes of the ComfyUI objects the pack's adapter and nodes touch, for CI (the real host is tested in tests/comfyui).

What each fake does is what ComfyUI 0.3.64 does (hosts.md §2-3), reduced to the tiny models of
`tests/webui/fakes.py` (ldm module names, a sigma-space `apply_model`):
- a MODEL is a ModelPatcher: `clone()` shares the weights and copies the patch list; LoraLoader
  (`comfy.sd.load_lora_for_models`) maps kohya keys to weights through `comfy.lora.model_lora_keys_unet` and adds
  `up @ down * alpha / rank * strength` as patches to a clone, never to the weights;
- a CLIP tokenizes into `{"l": [[(id, weight), ...]]}` (SDXL: `"g"` and `"l"`) and encodes through
  `cond_stage_model.clip_l` / `clip_g`;
- `comfy_api.latest.io` checks what ComfyUI's V3 executor checks: required inputs are given, nothing unknown is.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import torch
from torch import nn

from tests.webui.fakes import POOLED, TOKENS, FakeKModel, FakeTextModel, TinyLdmUNet, size_vector

START, END = 1, 2  # FakeTextModel's word ids start at 3
WIDTH = {"sd1": {"l": 32}, "sdxl": {"l": 768, "g": 1280}}


# -- model ----------------------------------------------------------------------------------------------------
class EPS:
    pass


class V_PREDICTION:  # noqa: N801 - ComfyUI's class name, which the adapter reads
    pass


class SD15:
    pass


class SDXL:
    pass


class BaseModel(FakeKModel):
    """comfy.model_base.BaseModel: the UNet, its sigma table (`model_sampling`) and a denoiser `apply_model`."""

    def __init__(self, arch: str, v_prediction: bool = False) -> None:
        adm = POOLED + 48 if arch == "sdxl" else None
        super().__init__(TinyLdmUNet(sum(WIDTH[arch].values()), adm), v_prediction)
        self.model_config = {"sd1": SD15, "sdxl": SDXL}[arch]()
        kind = V_PREDICTION if v_prediction else EPS
        self.model_sampling = type("ModelSamplingDiscrete", (kind,), {})()
        self.model_sampling.sigmas = self.predictor.sigmas
        self.latent_format = SimpleNamespace(latent_channels=4)
        self.calls = 0

    def get_dtype(self) -> torch.dtype:
        return torch.float32

    def apply_model(self, x, t, c_crossattn=None, control=None, transformer_options=None, **kwargs):
        self.calls += 1
        return super().apply_model(x, t, c_crossattn, control, transformer_options, **kwargs)

    def encode_adm(self, pooled_output, width, height, target_width, target_height) -> torch.Tensor:
        return torch.cat([pooled_output, size_vector(width, height, len(pooled_output))], dim=1)


class ModelPatcher:
    """A MODEL: shared weights plus this clone's weight patches (what LoraLoader adds)."""

    def __init__(self, model: BaseModel, patches: dict[str, list[torch.Tensor]] | None = None) -> None:
        self.model = model
        self.patches = patches or {}
        self.load_device = torch.device("cpu")
        self.model_options: dict[str, Any] = {"transformer_options": {}}

    def clone(self) -> ModelPatcher:
        return ModelPatcher(self.model, {k: list(v) for k, v in self.patches.items()})

    @contextlib.contextmanager
    def patched(self) -> Iterator[BaseModel]:
        """The weights with this clone's patches added, for the duration (as ComfyUI does before sampling)."""
        params = dict(self.model.named_parameters())
        saved = {k: params[k].detach().clone() for k in self.patches}
        for key, deltas in self.patches.items():
            with _writable(params[key]):
                for delta in deltas:
                    params[key].add_(delta.reshape(params[key].shape).to(params[key].dtype))
        try:
            yield self.model
        finally:
            for key, value in saved.items():
                with _writable(params[key]):
                    params[key].copy_(value)


def _writable(param: torch.Tensor) -> contextlib.AbstractContextManager:
    """In-place writes to weights loaded in inference mode happen in inference mode (as ComfyUI patches them)."""
    return torch.inference_mode() if param.is_inference() else torch.no_grad()


def model_lora_keys_unet(model: BaseModel, key_map: dict) -> dict[str, str]:
    """comfy.lora's map: `lora_unet_<path with _>` → `diffusion_model.<path>.weight`, for the ldm path and (as
    ComfyUI's map does through its own UNet conversion table) the diffusers path of each layer."""
    from erasure_core.lora.keys import ldm_to_diffusers

    paths = [
        n[: -len(".weight")]
        for n, p in model.diffusion_model.named_parameters()
        if n.endswith(".weight") and p.ndim >= 2
    ]
    diffusers = ldm_to_diffusers(paths)
    for path in paths:
        for spelling in (path, diffusers.get(path)):
            if spelling:
                key_map[f"lora_unet_{spelling.replace('.', '_')}"] = f"diffusion_model.{path}.weight"
    return key_map


def load_lora_for_models(model: ModelPatcher, clip: Any, lora: dict, strength_model: float, strength_clip: float):
    """comfy.sd.load_lora_for_models for the UNet: a clone with the LoRA as patches; keys it cannot map are logged
    by ComfyUI and skipped (here: recorded in `not_loaded`)."""
    key_map = model_lora_keys_unet(model.model, {})
    out = model.clone()
    out.not_loaded = []
    prefixes = {k.rsplit(".lora_", 1)[0] if ".lora_" in k else k.rsplit(".", 1)[0] for k in lora}
    for prefix in sorted(prefixes):
        if prefix not in key_map:
            out.not_loaded.append(prefix)
            continue
        up, down = lora[f"{prefix}.lora_up.weight"].float(), lora[f"{prefix}.lora_down.weight"].float()
        rank = down.shape[0]
        alpha = float(lora[f"{prefix}.alpha"]) if f"{prefix}.alpha" in lora else rank
        delta = (up.flatten(1) @ down.flatten(1)) * (alpha / rank) * strength_model
        out.patches.setdefault(key_map[prefix], []).append(delta)
    return out, clip


# -- text -----------------------------------------------------------------------------------------------------
class ClipEncoder:
    """One of `cond_stage_model`'s encoders (SDClipModel): token-id lists in, (hidden states, pooled) out."""

    def __init__(self, width: int, pooled: bool) -> None:
        self.text = FakeTextModel(width, POOLED if pooled else None)

    def encode(self, batch: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor | None]:
        rows = []
        for ids in batch:
            words = [i for i in ids if i > END]
            z = self.text.position.clone()
            if words:
                z[1 : 1 + len(words)] += self.text.table[words]
            rows.append(z)
        context = torch.stack(rows)
        projection = self.text.pooled_projection
        return context, None if projection is None else context.mean(1) @ projection


class ClipTokenizer:
    def __init__(self, text: FakeTextModel) -> None:
        self.text = text
        self.tokenizer = text.tokenizer  # the HF tokenizer, for the vocabulary
        self.end_token = END

    def tokenize(self, prompt: str) -> list[list[tuple[int, float]]]:
        ids = [START, *self.text.token_ids(prompt)[: TOKENS - 2], END]
        return [[(i, 1.0) for i in ids + [END] * (TOKENS - len(ids))]]


class Clip:
    """comfy.sd.CLIP over one (SD1) or two (SDXL: l, g) encoders."""

    def __init__(self, arch: str) -> None:
        widths = WIDTH[arch]
        encoders = {key: ClipEncoder(width, pooled=key == "g") for key, width in widths.items()}
        self.cond_stage_model = SimpleNamespace(
            **{f"clip_{k}": e for k, e in encoders.items()},
            reset_clip_options=lambda: None,
            set_clip_options=lambda options: None,
        )
        self.tokenizer = SimpleNamespace(**{f"clip_{k}": ClipTokenizer(e.text) for k, e in encoders.items()})
        self.layer_idx = None
        self.keys = list(widths)

    def load_model(self) -> None:
        pass

    def tokenize(self, prompt: str) -> dict[str, list]:
        return {k: getattr(self.tokenizer, f"clip_{k}").tokenize(prompt) for k in self.keys}

    def encode_from_tokens(self, tokens: dict[str, list], return_pooled: bool = False):
        outs = {k: getattr(self.cond_stage_model, f"clip_{k}").encode([[p[0] for p in tokens[k][0]]]) for k in tokens}
        context = torch.cat([outs[k][0] for k in self.keys], dim=-1)
        pooled = outs[self.keys[-1]][1]
        return (context, pooled) if return_pooled else context

    def encode_from_tokens_scheduled(self, tokens: dict[str, list]) -> list:
        context, pooled = self.encode_from_tokens(tokens, return_pooled=True)
        return [[context, {"pooled_output": pooled}]]


class Vae:
    def decode(self, samples: torch.Tensor) -> torch.Tensor:
        """`[B, H, W, 3]` images in 0..1, 8x the latent size (as a VAE would return)."""
        rgb = torch.sigmoid(samples[:, :3])
        return nn.functional.interpolate(rgb, scale_factor=8).permute(0, 2, 3, 1)


def sample(model: ModelPatcher, noise, steps, cfg, sampler, scheduler, positive, negative, latent, **kwargs):
    """One denoising step from the highest noise level, on the patched weights: enough to tell two models apart."""
    with model.patched() as base:
        sigma = base.model_sampling.sigmas[-1:]
        return base.apply_model(noise * sigma, sigma, c_crossattn=positive[0][0]).detach()


# -- host services --------------------------------------------------------------------------------------------
class InterruptProcessingException(Exception):
    pass


class ProgressBar:
    bars: list[ProgressBar] = []

    def __init__(self, total: int, node_id: str | None = None) -> None:
        self.total, self.node_id, self.values = total, node_id, []
        ProgressBar.bars.append(self)

    def update_absolute(self, value: int, total: int | None = None, preview: Any = None) -> None:
        self.values.append(value)


class ModelManagement(ModuleType):
    """comfy.model_management: Cancel (`interrupt_after` polls), loading, cache emptying."""

    InterruptProcessingException = InterruptProcessingException

    def __init__(self) -> None:
        super().__init__("comfy.model_management")
        self.polls = 0
        self.interrupt_after: int | None = None
        self.loaded: list[ModelPatcher] = []
        self.emptied = 0

    def processing_interrupted(self) -> bool:
        self.polls += 1
        return self.interrupt_after is not None and self.polls > self.interrupt_after

    def throw_exception_if_processing_interrupted(self) -> None:
        if self.processing_interrupted():
            raise InterruptProcessingException()

    def load_models_gpu(self, models: list[ModelPatcher], force_full_load: bool = False) -> None:
        self.loaded.extend(models)

    def soft_empty_cache(self) -> None:
        self.emptied += 1


class PromptServer:
    instance: PromptServer

    def __init__(self) -> None:
        self.client_id = "client"
        self.events: list[tuple[str, dict]] = []

    def send_sync(self, event: str, data: dict, client_id: str | None = None) -> None:
        self.events.append((event, data))


def folder_paths_module(base: Path) -> ModuleType:
    loras = base / "models" / "loras"
    loras.mkdir(parents=True)

    def get_full_path(kind: str, name: str) -> str | None:
        path = loras / name
        return str(path) if kind == "loras" and path.is_file() else None

    return _module(
        "folder_paths",
        get_folder_paths=lambda kind: [str(loras)],
        get_user_directory=lambda: str(base / "user"),
        get_filename_list=lambda kind: sorted(p.relative_to(loras).as_posix() for p in loras.rglob("*.safetensors")),
        get_full_path=get_full_path,
    )


# -- comfy_api.latest -----------------------------------------------------------------------------------------
class Input:
    def __init__(self, io_type: str, id: str, optional: bool = False, **options: Any) -> None:
        self.io_type, self.id, self.optional, self.options = io_type, id, optional, options


class IoType:
    def __init__(self, name: str) -> None:
        self.name = name

    def Input(self, id: str, **options: Any) -> Input:  # noqa: N802 - ComfyUI's spelling
        return Input(self.name, id, **options)

    def Output(self, **options: Any) -> SimpleNamespace:  # noqa: N802
        return SimpleNamespace(io_type=self.name, **options)


class NodeOutput:
    def __init__(self, *values: Any, ui: Any = None) -> None:
        self.values, self.ui = values, ui


class ComfyNode:
    hidden = SimpleNamespace(unique_id=None)


class PreviewImage:
    def __init__(self, images: torch.Tensor, cls: Any = None) -> None:
        self.images = images

    def as_dict(self) -> dict[str, list]:
        return {"images": [{"shape": tuple(i.shape)} for i in self.images]}


def io_module() -> ModuleType:
    types = ["Boolean", "Combo", "String", "Int", "Float", "Model", "Clip", "Vae", "Image", "LoraModel", "LossMap"]
    return _module(
        "comfy_api.latest.io",
        **{name: IoType(name) for name in types},
        Custom=IoType,
        Schema=lambda **fields: SimpleNamespace(**fields),
        NodeOutput=NodeOutput,
        ComfyNode=ComfyNode,
        Hidden=SimpleNamespace(unique_id="UNIQUE_ID"),
    )


def run_node(cls: type, node_id: str = "7", **inputs: Any) -> NodeOutput:
    """Execute a V3 node as ComfyUI does: inputs by name, required ones checked, hidden ones set on the class."""
    schema = cls.define_schema()
    declared = {i.id: i for i in schema.inputs}
    if unknown := set(inputs) - set(declared):
        raise AssertionError(f"{cls.__name__} has no inputs {sorted(unknown)}")
    if missing := [i.id for i in schema.inputs if not i.optional and i.id not in inputs]:
        raise AssertionError(f"{cls.__name__} needs {missing}")
    cls.hidden = SimpleNamespace(unique_id=node_id)
    return cls.execute(**inputs)


def _module(name: str, **attrs: Any) -> ModuleType:
    module = ModuleType(name)
    module.__dict__.update(attrs)
    return module


def install(monkeypatch: Any, base: Path) -> SimpleNamespace:
    """Put a fake ComfyUI into `sys.modules` for one test; returns its handles."""
    mm = ModelManagement()
    server = PromptServer()
    PromptServer.instance = server
    ProgressBar.bars = []
    samplers = SimpleNamespace(SAMPLERS=["euler"], SCHEDULERS=["normal"])
    sample_module = _module(
        "comfy.sample",
        fix_empty_latent_channels=lambda model, latent: latent,
        prepare_noise=lambda latent, seed: torch.randn(latent.shape, generator=torch.Generator().manual_seed(seed)),
        sample=sample,
    )
    comfy = _module("comfy")
    comfy.__path__ = []
    modules = {
        "comfy": comfy,
        "comfy.model_management": mm,
        "comfy.utils": _module("comfy.utils", ProgressBar=ProgressBar),
        "comfy.sd": _module("comfy.sd", load_lora_for_models=load_lora_for_models),
        "comfy.lora": _module("comfy.lora", model_lora_keys_unet=model_lora_keys_unet),
        "comfy.sample": sample_module,
        "comfy.samplers": _module("comfy.samplers", KSampler=samplers),
        "folder_paths": folder_paths_module(base),
        "server": _module("server", PromptServer=PromptServer),
        "comfy_api": _module("comfy_api", __path__=[]),
        "comfy_api.latest": _module(
            "comfy_api.latest",
            io=io_module(),
            ui=_module("comfy_api.latest.ui", PreviewText=lambda text: text, PreviewImage=PreviewImage),
            ComfyExtension=type("ComfyExtension", (), {}),
            __path__=[],
        ),
    }
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
        parent, _, child = name.rpartition(".")
        if parent:
            setattr(modules[parent], child, module)
    return SimpleNamespace(mm=mm, server=server, loras=base / "models" / "loras", user=base / "user")
