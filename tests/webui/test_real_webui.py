"""The extension in a real A1111 v1.10.1 and a real Forge (main, 2025-06), on a random-weight full-size SD1.5 that
the test writes. Skipped unless `A1111_ROOT` / `FORGE_ROOT` point at a checkout (see docs/contributing.md).

What a user does: install (the WebUI runs install.py), start, see the tab, erase through the route on the loaded
model, use `<lora:NAME:1>` in the next prompt. And what must not happen: the loaded weights change, a file is
half-written, a second run or an Interrupt leaves anything behind.
"""

from __future__ import annotations

import base64
import io
import subprocess
import threading
import time
from pathlib import Path

import pytest

from .server import HTTPError, WebUIServer, host_from_env

ROUTE = "/concept-erasure/v1"
FAST = {"resolution": 64, "ddim_steps": 4, "audit_samples": 1, "audit_ddim_steps": 4}
pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def random_sd15(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Written once (about 20 s, 2.1 GB) and kept in pytest's cache folder for later sessions."""
    from .checkpoint import write_random_sd15

    cache = getattr(request.config, "cache", None)
    folder = Path(cache.mkdir("webui-random-sd15")) if cache else tmp_path_factory.mktemp("checkpoint")
    path = folder / "random_sd15.safetensors"
    if not path.exists():
        write_random_sd15(path)
    return path


@pytest.fixture(scope="session", params=["a1111", "forge"])
def server(request: pytest.FixtureRequest, random_sd15: Path, tmp_path_factory: pytest.TempPathFactory):
    host = host_from_env(request.param)
    if host is None:
        name = request.param.upper()
        pytest.skip(f"{name}_ROOT is not set (a {request.param} checkout; see docs/contributing.md)")
    if not (host.root / "launch.py").is_file() or not host.python.exists():
        pytest.fail(f"{host.root} is not a WebUI checkout, or {host.python} does not exist")
    srv = WebUIServer(host, tmp_path_factory.mktemp(f"{request.param}-data"))
    srv.prepare(random_sd15)
    srv.installer_output = srv.run_installers()
    srv.start()
    yield srv
    srv.stop()


def erase(server: WebUIServer, **fields) -> dict:
    body = {"erase": ["cat"], "keep": ["dog"], "method": "esd", "steps": 2, "settings": FAST, **fields}
    return server.post(f"{ROUTE}/erase", body)


def exact_hash(server: WebUIServer) -> str:
    return server.get(f"{ROUTE}/model?exact=true")["sha256"]


def test_install_py_ran_and_the_extension_loaded_without_errors(server: WebUIServer) -> None:
    check = subprocess.run([str(server.host.python), "-c", "import peft, peft.tuners.lora"], capture_output=True)
    assert check.returncode == 0, check.stderr.decode()[-2000:]  # what install.py installs imports in the WebUI
    assert "could not install" not in server.installer_output
    log = server.log_text()
    assert "Error loading script: concept_erasure.py" not in log
    blocks = ["\n".join(block.splitlines()[:60]) for block in log.split("Traceback")[1:]]
    tracebacks = [block for block in blocks if "extensions/concept-erasure/" in block]  # a frame in our code
    assert not tracebacks, tracebacks[0][:3000]


def test_the_erase_concept_tab_is_built(server: WebUIServer) -> None:
    components = server.get("/config")["components"]
    tabs = {c["props"].get("elem_id"): c["props"].get("label") for c in components if c.get("type") == "tabitem"}
    assert tabs.get("tab_concept_erasure") == "Erase Concept"
    ids = {c["props"].get("elem_id") for c in components}
    assert {"concept_erasure_check_name", "concept_erasure_check"} <= ids  # checking a LoRA on the loaded model
    assert {"concept_erasure_attack_name", "concept_erasure_attacks", "concept_erasure_attack"} <= ids  # attack audit


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"erase": []}, "empty"),
        ({"keep": ["cat"]}, "both erased and kept"),
        ({"name": "../outside"}, "would leave the loras folder"),
        ({"steps": "many"}, "'steps' is 'many'"),
    ],
)
def test_bad_input_is_refused_with_what_to_fix(server: WebUIServer, fields: dict, says: str) -> None:
    with pytest.raises(HTTPError) as error:
        erase(server, **fields)
    assert error.value.status == 422 and says in error.value.json()["detail"]
    assert not server.loras.exists() or not list(server.loras.glob("*.safetensors"))


def test_an_erasure_on_the_loaded_model_gives_a_lora_the_webui_loads_and_uses(server: WebUIServer) -> None:
    model = server.get(f"{ROUTE}/model?exact=true")
    assert model["arch"] == "sd1" and model["name"] == "random_sd15"
    before = server.txt2img("a photo of a cat")

    answer = erase(server, name="no-cat", steps=4, lr=0.02)

    assert exact_hash(server) == model["sha256"]  # the loaded weights are bit-identical after the run
    path = server.loras / "no-cat.safetensors"
    assert answer["path"] == str(path) and path.is_file() and path.with_suffix(".json").is_file()
    assert answer["prompt"] == "<lora:no-cat:1>" and answer["audit"]["rows"][0]["prompt"] == "cat"
    assert "no-cat" in [lora["name"] for lora in server.get("/sdapi/v1/loras")]
    assert (server.txt2img("a photo of a cat") == before).all()
    with_lora = server.txt2img("a photo of a cat <lora:no-cat:1>")
    assert abs(with_lora - before).mean() > 0.5  # the WebUI's own LoRA loader applied the file
    log = server.log_text()
    assert not [line for line in log.splitlines() if "didn't match keys" in line and "no-cat" in line]

    check = server.post(f"{ROUTE}/check", {"lora": "no-cat", "strength": 1.0})  # on the checkpoint it was made on
    erasure = next(r["erasure"] for r in check["audit"]["rows"] if r["prompt"] == "cat")
    assert erasure > 0 and check["held"] == (erasure >= 0.7) and "cat" in check["verdict"]
    assert exact_hash(server) == model["sha256"]
    if server.host.kind == "forge":
        assert "no-cat.safetensors for KModel-UNet with 64 keys at weight 1.0 (skipped 0 keys)" in log

    # The attack audit on the loaded checkpoint, within its budget also where sampling is slow (a full-size SD1.5
    # on the CPU: then the budget is refused with the one it would need). A random-weight model may draw nothing
    # it could be asked for; then the audit says so rather than report a success rate.
    began = time.monotonic()
    try:
        attack = server.post(f"{ROUTE}/attack", {"lora": "no-cat", "attacks": ["sweep"], "budget": 20, "held_out": 2})
        assert attack["concept"] == "cat" and 0.0 <= attack["success_rate"] <= 1.0 and "not a proof" in attack["text"]
    except HTTPError as error:
        detail = error.json()["detail"]
        assert error.status == 422 and ("too small for this model" in detail or "in the first place" in detail), detail
    assert time.monotonic() - began < 20 + 60  # the budget, and a minute for encoding and the timed step
    assert exact_hash(server) == model["sha256"]


def test_the_before_after_grid_is_drawn_by_the_webuis_txt2img(server: WebUIServer) -> None:
    from PIL import Image

    before = server.txt2img("a photo of a dog")
    answer = erase(server, name="no-cat-grid", preview=True, preview_size=64, preview_steps=2)
    grid = Image.open(io.BytesIO(base64.b64decode(answer["preview"])))
    assert [row["role"] for row in answer["preview_rows"]] == ["erased", "kept"] and grid.size[1] >= 2 * 64
    assert answer["preview_error"] is None and answer["timings"]["preview_s"] > 0
    assert (server.txt2img("a photo of a dog") == before).all()  # the LoRA the grid used is gone again


def test_progress_a_second_run_and_interrupt(server: WebUIServer) -> None:
    """A long run reports through /sdapi/v1/progress, refuses a second one at once, and stops on Interrupt with
    nothing written and the model unchanged."""
    sha = exact_hash(server)
    outcome: dict = {}

    def long_run() -> None:
        try:
            outcome["answer"] = erase(server, name="interrupted", steps=400)
        except HTTPError as exc:
            outcome["error"] = exc

    worker = threading.Thread(target=long_run)
    worker.start()
    deadline = time.monotonic() + 300
    progress = {}
    while time.monotonic() < deadline:
        progress = server.get("/sdapi/v1/progress?skip_current_image=true")
        if (progress.get("textinfo") or "").startswith("Erasing: step") and progress["progress"] > 0:
            break
        time.sleep(0.5)
    assert (progress.get("textinfo") or "").startswith("Erasing: step"), progress

    with pytest.raises(HTTPError) as second:
        erase(server, name="second")
    assert second.value.status == 409 and "Another concept erasure is running" in second.value.json()["detail"]

    server.post("/sdapi/v1/interrupt")
    worker.join(300)
    assert "error" in outcome and outcome["error"].status == 409, outcome
    assert "during training at step" in outcome["error"].json()["detail"]
    assert not list(server.loras.glob("interrupted*")) and not list(server.loras.glob("second*"))
    assert exact_hash(server) == sha


def test_a_lora_trained_on_a_diffusers_model_loads_on_every_layer_of_the_single_file_model(
    server: WebUIServer,
) -> None:
    """A CLI-made SD1.5 LoRA (diffusers-style kohya names) on every layer the engine can train: the WebUI's own
    loader places every key on the loaded single-file checkpoint and the image changes."""
    import torch
    from diffusers import UNet2DConditionModel
    from safetensors.torch import save_file

    from erasure_core.layers import is_trainable_type
    from erasure_core.lora.keys import kohya_key_map
    from erasure_core.single_file import constructor_arguments

    config = constructor_arguments("sd1", "unet")
    with torch.device("meta"):
        unet = UNet2DConditionModel(**config)
    modules = {n: m for n, m in unet.named_modules() if n and is_trainable_type(m)}
    prefixes = kohya_key_map(modules, "sd1", "diffusers")
    generator = torch.Generator().manual_seed(0)
    tensors = {}
    for name, module in modules.items():
        shape = tuple(module.weight.shape)
        kernel = shape[2:] if len(shape) == 4 else ()
        down = torch.randn((2, shape[1], *kernel), generator=generator) * 0.05
        up = torch.randn((shape[0], 2, *((1, 1) if kernel else ())), generator=generator) * 0.05
        tensors |= {f"{prefixes[name]}.lora_down.weight": down.half(), f"{prefixes[name]}.lora_up.weight": up.half()}
        tensors[f"{prefixes[name]}.alpha"] = torch.tensor(2.0).half()
    server.loras.mkdir(parents=True, exist_ok=True)
    header = {"ss_network_module": "networks.lora"}
    save_file(tensors, str(server.loras / "all-layers.safetensors"), header)
    stray = {
        "lora_unet_no_such_layer.lora_down.weight": down.half(),
        "lora_unet_no_such_layer.lora_up.weight": up.half(),
    }
    save_file(tensors | stray, str(server.loras / "one-stray.safetensors"), header)  # shows the log check can fail
    server.post("/sdapi/v1/refresh-loras")

    before = server.txt2img("a photo of a cat")
    with_lora = server.txt2img("a photo of a cat <lora:all-layers:1>")
    assert abs(with_lora - before).mean() > 0.5
    server.txt2img("a photo of a cat <lora:one-stray:1>")
    log = server.log_text()
    if server.host.kind == "a1111":
        unmatched = [line for line in log.splitlines() if "didn't match keys" in line]
        assert any("one-stray" in line for line in unmatched), "the WebUI's unmatched-key message was not seen"
        assert not any("all-layers" in line for line in unmatched), unmatched
    if server.host.kind == "forge":
        assert f"all-layers.safetensors for KModel-UNet with {len(modules)} keys at weight 1.0 (skipped 0 keys)" in log
