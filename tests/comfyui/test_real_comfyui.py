"""Against a real headless ComfyUI (COMFYUI_ROOT): train, save, reload with ComfyUI's own LoraLoader, cache, cancel.

The checkpoint is built in the test from ComfyUI's classes and detected by ComfyUI as SD1.5 (random weights).
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from .server import ComfyServer, messages, ui_to_api
from .workflows import attack_prompt, audit_prompt, baseline_prompt, erase_prompt, loraloader_prompt, sampling

OUR_NODES = {
    "ConceptErasureConceptList": "Concept List",
    "ConceptErasureErase": "Erase Concept",
    "ConceptErasureSaveLora": "Save Erasure LoRA",
    "ConceptErasureLoadLora": "Load Erasure LoRA",
    "ConceptErasureBeforeAfter": "Before/After Preview",
    "ConceptErasureAudit": "Erasure Audit",
    "ConceptErasureAttackAudit": "Erasure Attack Audit",
}
EXAMPLES = Path(__file__).resolve().parents[2] / "example_workflows"


def latent(server: ComfyServer, prefix: str) -> torch.Tensor:
    files = sorted((server.base / "output" / "latents").glob(f"{prefix}_*.latent"))
    assert files, f"no latent saved for {prefix}"
    return load_file(str(files[-1]))["latent_tensor"]


def assert_success(entry: dict, prompt: dict | None = None) -> None:
    errors = messages(entry, "execution_error")
    assert entry["status"]["status_str"] == "success", errors[0]["exception_message"] if errors else entry["status"]
    if prompt is not None:  # ComfyUI drops an output node that fails validation and still reports success
        executed = {n for m in messages(entry, "execution_cached") for n in m["nodes"]} | set(entry["outputs"])
        for node_id, node in prompt.items():
            if node["class_type"].startswith("ConceptErasure") and node["class_type"] != "ConceptErasureErase":
                assert node_id in executed or node["class_type"] == "ConceptErasureConceptList", f"{node} did not run"


def error_message(entry: dict) -> str:
    errors = messages(entry, "execution_error")
    assert errors, f"expected an error, got {entry['status']}"
    return errors[0]["exception_message"]


def test_nodes_are_registered_with_their_names(server: ComfyServer):
    info = server.get("/object_info")
    for node_id, display in OUR_NODES.items():
        assert node_id in info, f"{node_id} missing; server log:\n{server.log()[-3000:]}"
        assert info[node_id]["display_name"] == display
        assert info[node_id]["category"] == "concept erasure"
    assert set(info["ConceptErasureErase"]["output"]) == {"MODEL", "LORA_MODEL", "LOSS_MAP", "STRING"}


def test_example_workflows_use_only_known_nodes(server: ComfyServer):
    info = server.get("/object_info")
    files = sorted(EXAMPLES.glob("*.json"))
    assert len(files) >= 3
    for path in files:
        workflow = json.loads(path.read_text())
        types = {node["type"] for node in workflow["nodes"]}
        unknown = types - set(info) - {"Note", "MarkdownNote", "Reroute"}
        assert not unknown, f"{path.name} uses unknown node types {unknown}"
        ids = {node["id"] for node in workflow["nodes"]}
        for link in workflow["links"]:
            assert link[1] in ids and link[3] in ids, f"{path.name}: link {link} points at a missing node"


def test_erase_save_and_comfy_loraloader_reproduce_the_patched_model(server: ComfyServer):
    assert_success(server.run(baseline_prompt("original")))
    entry = server.run(erase_prompt(save_name="test/erased", latent_prefix="erased"))
    assert_success(entry)
    saved = server.loras / "test" / "erased.safetensors"
    assert saved.is_file()
    with safe_open(str(saved), framework="pt") as f:
        meta = f.metadata()
        keys = list(f.keys())  # noqa: SIM118 - a safetensors handle
    assert json.loads(meta["erasure_erased"]) == ["cat"] and meta["ss_output_name"] == "erased"
    assert keys and all(k.startswith("lora_unet_") for k in keys)
    assert (
        "test/erased.safetensors"
        in server.get("/object_info/LoraLoader")["LoraLoader"]["input"]["required"]["lora_name"][0]
    )

    assert_success(server.run(loraloader_prompt("test/erased.safetensors", "loraloader")))
    log = server.log()
    assert "lora key not loaded" not in log and "NOT LOADED" not in log
    erased, reloaded, original = latent(server, "erased"), latent(server, "loraloader"), latent(server, "original")
    assert torch.allclose(erased, reloaded, atol=1e-5), (
        "LoraLoader with the saved file differs from Erase Concept's MODEL"
    )
    assert not torch.allclose(erased, original, atol=1e-4), "the erasure LoRA changed nothing"

    outputs = entry["outputs"]["2"]
    assert "erased: cat" in outputs["text"][0] and "kept: dog" in outputs["text"][0]


def test_queued_again_the_same_workflow_does_not_retrain(server: ComfyServer):
    first = server.run(erase_prompt(seed=11, save_name=None, latent_prefix="cache_a"))
    assert_success(first)
    again = server.run(erase_prompt(seed=11, save_name=None, latent_prefix="cache_a"))
    assert_success(again)
    cached_nodes = [n for m in messages(again, "execution_cached") for n in m["nodes"]]
    assert "2" in cached_nodes
    # Drop ComfyUI's in-memory cache (as a restart would): the node runs, but takes the LoRA from the disk cache.
    server.post("/free", {"unload_models": True, "free_memory": True})
    time.sleep(1.0)
    third = server.run(erase_prompt(seed=11, save_name=None, latent_prefix="cache_b"))
    assert_success(third)
    assert third["outputs"]["2"]["text"][0].startswith("(from the cache")
    assert torch.equal(latent(server, "cache_a"), latent(server, "cache_b"))


def test_cancel_mid_run_writes_nothing_and_leaves_the_model_untouched(server: ComfyServer):
    assert_success(server.run(baseline_prompt("before_cancel")))
    cache = server.base / "user" / "concept_erasure" / "cache"
    before = set(cache.glob("*")) if cache.exists() else set()
    loras_before = set(server.loras.rglob("*"))
    prompt_id = server.queue(erase_prompt(steps=5000, seed=99, save_name="test/cancelled", latent_prefix="never"))
    # wait for training to be under way, then press Cancel
    deadline = time.time() + 120
    while time.time() < deadline and not server.get("/queue")["queue_running"]:
        time.sleep(0.2)
    time.sleep(8)
    server.post("/interrupt")
    entry = server.wait(prompt_id)
    assert messages(entry, "execution_interrupted"), entry["status"]
    assert set(server.loras.rglob("*")) == loras_before
    assert (set(cache.glob("*")) if cache.exists() else set()) == before
    assert server.alive()
    assert_success(server.run(baseline_prompt("after_cancel")))
    assert torch.equal(latent(server, "before_cancel"), latent(server, "after_cancel"))


@pytest.mark.parametrize(
    "prompt, expected",
    [
        (erase_prompt(erase="", save_name=None), "empty"),
        (erase_prompt(erase="# only a comment", save_name=None), "empty"),
        (erase_prompt(seed=3, save_name="../outside", latent_prefix="bad_name"), "leave the loras folder"),
        (erase_prompt(erase="cat: -1", save_name=None), "above 0"),
        (erase_prompt(erase="cat\ndog", keep="dog", save_name=None), "both erased and kept"),
    ],
)
def test_bad_input_gives_a_clear_error_and_the_server_keeps_running(server: ComfyServer, prompt, expected):
    files_before = set(server.loras.rglob("*"))
    entry = server.run(prompt)
    assert expected in error_message(entry)
    assert set(server.loras.rglob("*")) == files_before
    assert server.alive()


def test_steps_out_of_range_are_refused_before_running(server: ComfyServer):
    with pytest.raises(AssertionError, match="steps"):
        server.queue(erase_prompt(steps=0, save_name=None))


def test_erase_concept_without_clip_is_refused_before_running(server: ComfyServer):
    """CLIP is a required input: ComfyUI's own validation names it before anything runs."""
    with pytest.raises(AssertionError, match="clip"):
        server.queue(erase_prompt(clip=False, save_name=None))


def test_uce_says_which_widgets_it_does_not_use(server: ComfyServer):
    entry = server.run(erase_prompt(method="uce", save_name=None, latent_prefix="uce_note"))
    assert_success(entry)
    text = entry["outputs"]["2"]["text"][0]
    assert "steps, learning_rate and rank do not apply" in text


def test_audit_node_reads_one_concept_per_line(server: ComfyServer):
    assert_success(server.run(erase_prompt(save_name="test/for_audit", latent_prefix="for_audit")))
    tensors = load_file(server.loras / "test" / "for_audit.safetensors")
    save_file(tensors, server.loras / "test" / "foreign.safetensors")  # no metadata: the node must be told
    entry = server.run(audit_prompt("test/foreign.safetensors", "cat\ndog"))
    assert_success(entry)
    report = entry["outputs"]["3"]["text"][0]
    assert "cat" in report and "dog" in report and "cat\ndog" not in report


def test_attack_audit_node_runs_within_its_budget_and_leaves_the_model_untouched(server: ComfyServer):
    """A random-weight checkpoint may draw nothing it could be asked for: then the node says so instead of a rate."""
    assert_success(server.run(erase_prompt(save_name="test/for_attack", latent_prefix="for_attack")))
    assert_success(server.run(baseline_prompt("before_attack")))
    began = time.monotonic()
    entry = server.run(attack_prompt("test/for_attack.safetensors", budget=30))
    if entry["status"]["status_str"] == "success":
        report = entry["outputs"]["3"]["text"][0]
        assert "sweep" in report and "held-out latents of 'cat'" in report and "not a proof" in report
    else:
        assert "in the first place" in error_message(entry) or "too small for this model" in error_message(entry)
    assert time.monotonic() - began < 30 + 60
    assert_success(server.run(baseline_prompt("after_attack")))
    assert torch.equal(latent(server, "before_attack"), latent(server, "after_attack"))


def test_progress_and_loss_reach_the_browser_socket(server: ComfyServer):
    websocket = pytest.importorskip("websocket")
    ws = websocket.create_connection(f"ws://127.0.0.1:{server.port}/ws?clientId={server.client_id}", timeout=300)
    events: list[tuple[str, dict]] = []

    def listen() -> None:
        try:
            while True:
                raw = ws.recv()
                if isinstance(raw, str):
                    message = json.loads(raw)
                    events.append((message["type"], message.get("data", {})))
        except Exception:
            return

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    assert_success(server.run(erase_prompt(steps=5, seed=21, save_name=None, latent_prefix="ws")))
    time.sleep(0.5)
    ws.close()
    progress = [d for t, d in events if t == "progress" and d.get("node") == "2"]
    ours = [d for t, d in events if t == "concept_erasure.progress" and d.get("node") == "2"]
    assert len(progress) >= 5 and progress[-1]["value"] == progress[-1]["max"]
    losses = [d["loss"] for d in ours if "loss" in d]
    assert len(losses) == 5 and all(v == v for v in losses)
    assert {d["concept"] for d in ours if "concept" in d} == {"cat"}


def _example(name: str) -> dict:
    return json.loads((EXAMPLES / name).read_text())


FAST_EAP = {
    "steps": 3,
    "advanced": "ddim_steps = 4\nresolution = 64\naudit_samples = 1\naudit_ddim_steps = 2\n"
    "vocabulary_limit = 300\nk_closest = 20\nnum_centers = 4",
}
SMALL_PREVIEW = {"width": 64, "height": 64, "steps": 2}


def test_example_workflows_run_end_to_end(server: ComfyServer):
    from .conftest import CHECKPOINT

    info = server.get("/object_info")
    erase = ui_to_api(
        _example("erase_concept_and_save_lora.json"),
        info,
        {
            "CheckpointLoaderSimple": {"ckpt_name": CHECKPOINT},
            "ConceptErasureErase": FAST_EAP,
            "ConceptErasureSaveLora": {"name": "examples/painter", "if_exists": "fail"},
            "ConceptErasureBeforeAfter": SMALL_PREVIEW,
        },
    )
    entry = server.run(erase)
    assert_success(entry, erase)
    saved = server.loras / "examples" / "painter.safetensors"
    assert saved.is_file()
    preview_id = next(k for k, v in erase.items() if v["class_type"] == "ConceptErasureBeforeAfter")
    ui_out = entry["outputs"][preview_id]
    assert len(ui_out["images"]) == 1 and len(ui_out["erasure_compare"]) == 2
    # 5 erased + 4 kept painters, two columns
    grid = server.base / "temp" / ui_out["images"][0]["filename"]
    assert grid.is_file()

    for name in ("apply_erasure_lora_to_another_checkpoint.json", "audit_erasure_lora.json"):
        api_prompt = ui_to_api(
            _example(name),
            info,
            {
                "CheckpointLoaderSimple": {"ckpt_name": CHECKPOINT},
                "ConceptErasureLoadLora": {"lora_file": "examples/painter.safetensors"},
                "ConceptErasureBeforeAfter": SMALL_PREVIEW,
                "ConceptErasureAudit": {"samples": 1},
            },
        )
        entry = server.run(api_prompt)
        assert_success(entry, api_prompt)
    audit_id = next(k for k, v in api_prompt.items() if v["class_type"] == "ConceptErasureAudit")
    report = entry["outputs"][audit_id]["text"][0]
    assert "Van Gogh" in report and "erased" in report and "Claude Monet" in report
    assert entry["outputs"][audit_id]["images"]


def test_comfy_builtin_lora_nodes_take_our_outputs(server: ComfyServer):
    """Load LoRA Model, Save LoRA Weights and Plot Loss Graph (ComfyUI's trainer nodes) accept LORA_MODEL/LOSS_MAP."""
    info = server.get("/object_info")
    missing = {"LoraModelLoader", "SaveLoRANode", "LossGraphNode"} - set(info)
    if missing:
        pytest.skip(f"this ComfyUI has no {sorted(missing)}")
    prompt = erase_prompt(seed=41, save_name=None, latent_prefix="ours")
    prompt["30"] = {
        "class_type": "LoraModelLoader",
        "inputs": {"model": ["1", 0], "lora": ["2", 1], "strength_model": 1.0},
    }
    prompt["31"] = {
        "class_type": "SaveLoRANode",
        "inputs": {"lora": ["2", 1], "prefix": "loras/builtin_save", "steps": 4},
    }
    prompt["32"] = {"class_type": "LossGraphNode", "inputs": {"loss": ["2", 2], "filename_prefix": "loss_graph"}}
    prompt.update(sampling("30", "builtin", first=40))
    entry = server.run(prompt)
    assert_success(entry)
    assert torch.equal(latent(server, "ours"), latent(server, "builtin"))
    saved = sorted((server.base / "output" / "loras").glob("builtin_save*.safetensors"))
    assert saved and all(k.startswith("lora_unet_") for k in load_file(str(saved[-1])))
    assert any(p.name.startswith("loss_graph") for p in (server.base / "temp").glob("*.png"))
