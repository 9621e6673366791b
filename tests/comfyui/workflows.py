"""API-format prompts the tests queue (the UI-format examples for users live in example_workflows/)."""

from __future__ import annotations

from typing import Any

from .conftest import CHECKPOINT

# Small enough for a 2-core CPU: a few steps at 64 px.
FAST_SETTINGS = "ddim_steps = 4\nresolution = 64\naudit_samples = 1\naudit_ddim_steps = 2"


def erase_prompt(
    erase: str = "cat", keep: str = "dog", steps: int = 4, seed: int = 0, save_name: str | None = "test/erased",
    latent_prefix: str = "erased", method: str = "esd", clip: bool = True,
) -> dict[str, Any]:  # fmt: skip
    prompt: dict[str, Any] = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": CHECKPOINT}},
        "2": {
            "class_type": "ConceptErasureErase",
            "inputs": {
                "model": ["1", 0],
                "erase": erase,
                "keep": keep,
                "method": method,
                "layers": "method default",
                "steps": steps,
                "learning_rate": 3e-3,
                "rank": 4,
                "seed": seed,
                "advanced": FAST_SETTINGS,
            },  # fmt: skip
        },
        **sampling("2", latent_prefix),
    }
    if clip:
        prompt["2"]["inputs"]["clip"] = ["1", 1]
    if save_name is not None:
        prompt["3"] = {
            "class_type": "ConceptErasureSaveLora",
            "inputs": {"lora": ["2", 1], "name": save_name, "if_exists": "fail"},
        }
    return prompt


def sampling(model_node: str, latent_prefix: str, text: str = "a photo of a cat", first: int = 10) -> dict[str, Any]:
    """Nodes first..first+4: encode, sample 2 steps at 64 px with a fixed seed, save the latent exactly (no PNG)."""
    pos, neg, empty, sampler, save = (str(first + i) for i in range(5))
    settings = {"seed": 7, "steps": 2, "cfg": 7.0, "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0}
    links = {"model": [model_node, 0], "positive": [pos, 0], "negative": [neg, 0], "latent_image": [empty, 0]}
    return {
        pos: {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": text}},
        neg: {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": ""}},
        empty: {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        sampler: {"class_type": "KSampler", "inputs": {**links, **settings}},
        save: {
            "class_type": "SaveLatent",
            "inputs": {"samples": [sampler, 0], "filename_prefix": f"latents/{latent_prefix}"},
        },
    }


def loraloader_prompt(lora_name: str, latent_prefix: str) -> dict[str, Any]:
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": CHECKPOINT}},
        "5": {
            "class_type": "LoraLoader",
            "inputs": {
                "model": ["1", 0],
                "clip": ["1", 1],
                "lora_name": lora_name,
                "strength_model": 1.0,
                "strength_clip": 0.0,
            },
        },
        **sampling("5", latent_prefix),
    }


def baseline_prompt(latent_prefix: str) -> dict[str, Any]:
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": CHECKPOINT}},
        **sampling("1", latent_prefix),
    }


def _checkpoint_and_lora(lora_file: str) -> dict[str, Any]:
    """Nodes 1 (the checkpoint) and 2 (a LoRA file from the loras folder, loaded onto it)."""
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": CHECKPOINT}},
        "2": {
            "class_type": "ConceptErasureLoadLora",
            "inputs": {"model": ["1", 0], "lora_file": lora_file, "strength": 1.0, "check": False},
        },
    }


def attack_prompt(lora_file: str, budget: int) -> dict[str, Any]:
    """Load a LoRA file from the loras folder and run the attack audit's sweep on the checkpoint."""
    return {
        **_checkpoint_and_lora(lora_file),
        "3": {
            "class_type": "ConceptErasureAttackAudit",
            "inputs": {
                "model": ["1", 0], "clip": ["1", 1], "lora": ["2", 1], "budget_seconds": budget, "sweep": True,
                "discrete": False, "soft": False, "seed": 0,
            },
        },
    }  # fmt: skip


def audit_prompt(lora_file: str, erase: str) -> dict[str, Any]:
    """Load a LoRA file from the loras folder and audit it on the checkpoint; `erase` as typed in the node."""
    return {
        **_checkpoint_and_lora(lora_file),
        "3": {
            "class_type": "ConceptErasureAudit",
            "inputs": {"model": ["1", 0], "clip": ["1", 1], "lora": ["2", 1], "erase": erase, "samples": 1, "seed": 0},
        },
    }
