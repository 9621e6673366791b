"""SDXL and SD2 (v-prediction) inside a real ComfyUI (COMFYUI_ROOT), built from ComfyUI's own classes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from .server import REPO, comfy_env

PROBE = Path(__file__).with_name("model_probes.py")
FP16_FILE_TOLERANCE = 0.01  # as in diffusers (tests/erasure_core/test_methods.py): a fraction of the edit's size


def run_probe(function: str, comfy_root: Path, work: Path) -> dict:
    """Run `model_probes.<function>` in a child process that imports ComfyUI; return the JSON it prints."""
    code = (
        "import sys; sys.argv = ['x', '--cpu']\n"
        f"sys.path.insert(0, {str(comfy_root)!r})\n"
        "import comfy.options; comfy.options.enable_args_parsing()\n"
        f"sys.path.insert(1, {str(PROBE.parent)!r})\n"
        f"import model_probes; model_probes.{function}({str(REPO)!r})\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=comfy_root, env=comfy_env(comfy_root, work), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_sdxl_encoding_training_and_patching(comfy_root: Path, tmp_path: Path):
    result = run_probe("sdxl_main", comfy_root, tmp_path)
    assert result["arch"] == "sdxl"
    assert result["context_shape"] == [3, 77, 2048] and result["pooled_shape"] == [3, 1280]
    # our batched encoding equals ComfyUI's own one-prompt-at-a-time path (CLIP-L + CLIP-G, pooled from CLIP-G)
    assert result["context_error"] < 1e-4 and result["pooled_error"] < 1e-4
    assert len(result["losses"]) == 6 and all(v == v for v in result["losses"])
    assert result["keys"][0].startswith("lora_unet_input_blocks_") and result["n_keys"] > 0
    assert result["moved"] > 1e-3, "the returned MODEL does not carry the LoRA"
    assert result["original_unchanged"] == 0.0, "the input MODEL was changed"
    assert result["fp16_file_error"] <= FP16_FILE_TOLERANCE, "the default fp16 file does not reproduce the edit"
    # The candidate search's bfloat16 ranking runs through ComfyUI's encoders and keeps the nearest words exact.
    ranking = result["ranking"]
    assert ranking["count"] == 20 and ranking["same_order"] and ranking["far_differ"]
    assert ranking["nearest_error"] <= max(2 * ranking["batch_error"], 1e-6), ranking  # float32 noise, not bfloat16's


def test_sd2_v_prediction_is_converted_to_epsilon(comfy_root: Path, tmp_path: Path):
    result = run_probe("sd2_main", comfy_root, tmp_path)
    assert result["arch"] == "sd2" and result["latent_shape"] == [4, 96, 96]  # v-prediction SD2 is a 768 px model
    assert result["context_shape"] == [2, 77, 1024]
    assert result["eps_error"] < 1e-4 * max(1.0, result["eps_scale"])


def test_a_lora_trained_on_a_diffusers_model_matches_every_key_of_the_single_file_model_in_comfyui(
    comfy_root: Path, tmp_path: Path
):
    """Full-size SD1.5, SD2.x and SDXL: every layer our LoRA can train has its key in ComfyUI's LoRA map."""
    result = run_probe("key_coverage_main", comfy_root, tmp_path)
    assert {arch: r["detected"] for arch, r in result.items()} == {"sd1": "SD15", "sd2": "SD20", "sdxl": "SDXL"}
    for arch, r in result.items():
        assert r["lora_layers"] > 200 and r["unmatched"] == [], (arch, r)
