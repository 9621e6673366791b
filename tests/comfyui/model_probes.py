"""Run inside a process that imports ComfyUI: tiny SDXL and SD2 models built from ComfyUI's classes, through our backend.

Prints one JSON line with what the test checks. (No tiny SDXL passes ComfyUI's checkpoint detection, hosts.md §8,
so the model is built directly, as ComfyUI's loader would after detection.)
"""

from __future__ import annotations

import json
import sys
from types import SimpleNamespace

import torch

UNET = {
    "image_size": 32, "in_channels": 4, "out_channels": 4, "model_channels": 64, "channel_mult": [1, 2],
    "num_res_blocks": [1, 1], "transformer_depth": [0, 1], "transformer_depth_output": [0, 0, 1, 1],
    "transformer_depth_middle": 1, "num_head_channels": 32, "context_dim": 2048, "adm_in_channels": 2816,
    "use_linear_in_transformer": True, "num_classes": "sequential", "use_spatial_transformer": True,
    "legacy": False, "use_temporal_attention": False, "use_temporal_resblock": False,
}  # fmt: skip
SMALL_TEXT = {"num_hidden_layers": 3}  # SDXL reads the penultimate layer


def _randomise(module: torch.nn.Module, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.ndim <= 1:
                p.copy_(torch.ones_like(p) if "weight" in name else torch.zeros_like(p))
            else:
                p.copy_(torch.randn(p.shape, generator=generator) / max(1, p[0].numel()) ** 0.5)


def sdxl_main(pack_root: str) -> None:
    import comfy.model_management as mm
    import comfy.model_patcher
    import comfy.sd
    import comfy.sdxl_clip
    import comfy.supported_models

    sys.path.insert(0, pack_root)
    from tests.pack import load_pack

    load_pack()
    from concept_erasure_pack.erasure_core.config import make_config
    from concept_erasure_pack.nodes.comfy_backend import ComfyBackend
    from concept_erasure_pack.nodes.training import run_erasure

    with torch.inference_mode():
        base = comfy.supported_models.SDXL(dict(UNET)).get_model({})
        _randomise(base.diffusion_model, 0)
        model = comfy.model_patcher.ModelPatcher(base, mm.get_torch_device(), mm.unet_offload_device())
        options = {"clip_l_model_config": SMALL_TEXT, "clip_g_model_config": SMALL_TEXT}
        target = SimpleNamespace(
            params={}, clip=comfy.sdxl_clip.SDXLClipModel, tokenizer=comfy.sdxl_clip.SDXLTokenizer
        )
        clip = comfy.sd.CLIP(target, model_options=options)
        _randomise(clip.cond_stage_model, 1)

        backend = ComfyBackend(model.clone(), clip)
        prompts = ["a photo of a cat", "dog", ""]
        with torch.inference_mode(False):
            backend.load()
            batched = backend.encode_prompts(prompts)
        single = [clip.encode_from_tokens(clip.tokenize(p), return_pooled=True) for p in prompts]
        context_error = max(float((batched.context[i : i + 1] - c).abs().max()) for i, (c, _) in enumerate(single))
        pooled_error = max(float((batched.pooled[i : i + 1] - p).abs().max()) for i, (_, p) in enumerate(single))

        # EAP/AGE's vocabulary ranking in bfloat16 through ComfyUI's text encoders: the nearest keep float32 distances.
        from concept_erasure_pack.erasure_core.candidates import vocabulary_distances

        words = backend.vocabulary()[:400]
        with torch.inference_mode(False):
            exact, _ = vocabulary_distances(backend.encode_prompts, batched.select(0), words)
            ranked, count = vocabulary_distances(
                backend.encode_prompts, batched.select(0), words, exact_nearest=20, low_precision=True
            )
        nearest = exact[0].argsort()[:20]
        with torch.inference_mode(False):
            alone, _ = vocabulary_distances(backend.encode_prompts, batched.select(0), [words[i] for i in nearest])

        def error(values: torch.Tensor) -> float:
            return float(((values - exact[0, nearest]) / exact[0, nearest]).abs().max())

        ranking = {
            "count": count,
            "nearest_error": error(ranked[0, nearest]),
            # the nearest words in float32 again, in one smaller batch: how far the batch size alone moves the last
            # bits of ComfyUI's CPU encoders (the ranking encodes them again in batches of their own)
            "batch_error": error(alone[0]),
            "same_order": ranked[0].argsort()[:20].tolist() == nearest.tolist(),
            "far_differ": not torch.equal(ranked, exact),
        }

        config = make_config("esd", erase=("cat",), keep=("dog",), steps=6, lr=3e-3, rank=4, alpha=4.0, seed=0,
                             ddim_steps=4, resolution=64, audit_samples=1, audit_ddim_steps=2)  # fmt: skip
        import concept_erasure_pack.nodes.training as training
        from concept_erasure_pack.erasure_core.lora.adapter import load_lora_weights, remove_lora

        results = []  # the in-memory (fp32) result, before the node writes and reads back its fp16 file
        real_erase = training.erase
        training.erase = lambda *args, **kwargs: results.append(real_erase(*args, **kwargs)) or results[-1]
        with torch.inference_mode(False):
            out = run_erasure(model, clip, config, None, use_cache=False)
        training.erase = real_erase

        x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(3))
        sigma = torch.tensor([5.0])
        cond = batched.select(0)
        adm = base.encode_adm(pooled_output=cond.pooled, width=64, height=64, target_width=64, target_height=64)
        mm.load_models_gpu([model])
        before = model.model.apply_model(x, sigma, c_crossattn=cond.context, y=adm)
        mm.load_models_gpu([out.model])
        after = out.model.model.apply_model(x, sigma, c_crossattn=cond.context, y=adm)
        mm.load_models_gpu([model])
        again = model.model.apply_model(x, sigma, c_crossattn=cond.context, y=adm)
        with torch.inference_mode(False), torch.no_grad():
            load_lora_weights(base.diffusion_model, results[0].weights)
            in_memory = model.model.apply_model(x, sigma, c_crossattn=cond.context, y=adm)
            remove_lora(base.diffusion_model)
    print(
        json.dumps(
            {
                "arch": backend.arch,
                "context_shape": list(batched.context.shape),
                "pooled_shape": list(batched.pooled.shape),
                "context_error": context_error,
                "pooled_error": pooled_error,
                "losses": out.losses,
                "keys": sorted(out.lora)[:3],
                "n_keys": len(out.lora),
                "moved": float((after - before).abs().max()),
                "original_unchanged": float((again - before).abs().max()),
                # the fp16 file through ComfyUI's LoraLoader patches against the fp32 LoRA, relative to the edit
                "fp16_file_error": float((after - in_memory).abs().max() / (in_memory - before).abs().max()),
                "ranking": ranking,
            }
        )
    )


if __name__ == "__main__":
    sdxl_main(sys.argv[1])


SD2_UNET = {
    "image_size": 32, "in_channels": 4, "out_channels": 4, "model_channels": 64, "channel_mult": [1],
    "num_res_blocks": [1], "transformer_depth": [1], "transformer_depth_output": [1, 1],
    "transformer_depth_middle": 1, "num_head_channels": 32, "context_dim": 1024, "adm_in_channels": None,
    "use_linear_in_transformer": True, "use_spatial_transformer": True, "legacy": False,
    "use_temporal_attention": False, "use_temporal_resblock": False,
}  # fmt: skip


def sd2_main(pack_root: str) -> None:
    """SD2 v-prediction: our eps must equal sqrt(abar) * v + sqrt(1 - abar) * x_t computed from the raw UNet."""
    import comfy.model_base
    import comfy.model_management as mm
    import comfy.model_patcher
    import comfy.sd
    import comfy.supported_models
    import comfy.text_encoders.sd2_clip as sd2_clip

    sys.path.insert(0, pack_root)
    from tests.pack import load_pack

    load_pack()
    from concept_erasure_pack.nodes.comfy_backend import ComfyBackend

    with torch.inference_mode():
        config = comfy.supported_models.SD20(dict(SD2_UNET))
        base = comfy.model_base.BaseModel(config, model_type=comfy.model_base.ModelType.V_PREDICTION)
        _randomise(base.diffusion_model, 0)
        model = comfy.model_patcher.ModelPatcher(base, mm.get_torch_device(), mm.unet_offload_device())
        target = SimpleNamespace(params={}, clip=sd2_clip.SD2ClipModel, tokenizer=sd2_clip.SD2Tokenizer)
        clip = comfy.sd.CLIP(target, model_options={"clip_h_model_config": SMALL_TEXT})
        _randomise(clip.cond_stage_model, 1)
        backend = ComfyBackend(model.clone(), clip)
        with torch.inference_mode(False), torch.no_grad():
            backend.load()
            cond = backend.encode_prompts(["a photo of a cat", "dog"])
            x_t = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(3))
            t = torch.tensor([100, 700])
            eps = backend.predict_noise(x_t, t, cond)
            v = base.diffusion_model(x_t, t.float(), context=cond.context)
            abar = backend.alphas_cumprod[t][:, None, None, None]
            expected = abar.sqrt() * v + (1 - abar).sqrt() * x_t
    print(
        json.dumps(
            {
                "arch": backend.arch,
                "latent_shape": list(backend.latent_shape()),
                "context_shape": list(cond.context.shape),
                "eps_error": float((eps - expected).abs().max()),
                "eps_scale": float(expected.abs().max()),
            }
        )
    )


def key_coverage_main(pack_root: str) -> None:
    """Full-size SD1.5, SD2.x and SDXL UNets (on the meta device: names and shapes only): a LoRA trained on the
    diffusers model of each, on every layer the engine can train, must match ComfyUI's LoRA keys for the same
    model detected from its single-file layout, with no key left over."""
    import comfy.lora
    import comfy.model_detection
    from diffusers import UNet2DConditionModel

    sys.path.insert(0, pack_root)
    from tests.pack import load_pack

    load_pack()
    from concept_erasure_pack.erasure_core.layers import is_trainable_type
    from concept_erasure_pack.erasure_core.lora.keys import diffusers_to_ldm, kohya_key_map
    from concept_erasure_pack.erasure_core.single_file import constructor_arguments

    out = {}
    for arch in ("sd1", "sd2", "sdxl"):
        config = constructor_arguments(arch, "unet")
        with torch.device("meta"):
            unet = UNet2DConditionModel(**config)
        names = [n for n, m in unet.named_modules() if n and is_trainable_type(m)]
        ldm = diffusers_to_ldm([n for n, _ in unet.named_modules()], config["layers_per_block"])
        checkpoint = {}
        for key, tensor in unet.state_dict().items():
            module, _, leaf = key.rpartition(".")
            checkpoint[f"model.diffusion_model.{ldm[module]}.{leaf}"] = tensor
        unet_config = comfy.model_detection.detect_unet_config(checkpoint, "model.diffusion_model.")
        model_config = comfy.model_detection.model_config_from_unet_config(unet_config, checkpoint)
        with torch.device("meta"):
            model = model_config.get_model({})  # the weights are not read: only the module tree
        comfy_keys = comfy.lora.model_lora_keys_unet(model, {})
        ours = set(kohya_key_map(names, arch, "diffusers", config["layers_per_block"]).values())
        out[arch] = {
            "detected": type(model_config).__name__,
            "lora_layers": len(ours),
            "unmatched": sorted(k for k in ours if k not in comfy_keys)[:5],
        }
    print(json.dumps(out))
