"""The /concept-erasure/v1 routes on a fake WebUI, through FastAPI as the WebUI serves them."""

from __future__ import annotations

import base64
import io
import re

import pytest
import torch

pytest.importorskip("fastapi")
pytest.importorskip("httpx")  # FastAPI's test client

from fastapi import FastAPI  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402
from PIL import Image  # noqa: E402

from .conftest import FakeWebUI  # noqa: E402

FAST = {"resolution": 64, "ddim_steps": 4, "audit_samples": 1, "audit_ddim_steps": 4}
URL = "/concept-erasure/v1"


def client(credentials: dict[str, str] | None = None) -> TestClient:
    from a1111 import api

    app = FastAPI()
    api.register(app, credentials)
    return TestClient(app)


def test_methods_list_every_method_with_its_defaults_and_the_request_fields(webui: FakeWebUI) -> None:
    answer = client().get(f"{URL}/methods").json()
    assert answer["default"] == "eap" and set(answer["methods"]) == {"eap", "age", "esd", "uce"}
    assert answer["methods"]["esd"]["steps"] == 500 and "famous painters" in answer["presets"]
    assert {"erase", "keep", "method", "steps", "name", "settings", "preview"} <= set(answer["fields"])


def test_an_erasure_answers_the_loras_name_path_audit_and_timings(webui: FakeWebUI) -> None:
    body = {"erase": ["cat"], "keep": ["dog"], "method": "esd", "steps": 2, "name": "no-cat", "settings": FAST}
    response = client().post(f"{URL}/erase", json={**body, "preview": True, "preview_size": 64, "preview_steps": 2})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["name"] == "no-cat" and answer["prompt"] == "<lora:no-cat:1>"
    assert answer["path"] == str(webui.lora_dir / "no-cat.safetensors")
    assert [row["role"] for row in answer["audit"]["rows"]] == ["erased", "kept"]
    assert {"training_s", "save_s", "preview_s", "total_s"} <= set(answer["timings"])
    assert Image.open(io.BytesIO(base64.b64decode(answer["preview"]))).size[1] > 64
    assert webui.state.begun == webui.state.ended == 1  # held the WebUI's queue and progress state


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"erase": []}, "empty"),
        ({"erase": ["cat"], "keep": ["cat"]}, "both erased and kept"),
        ({"erase": ["cat"], "name": "../../escape"}, "leave the loras folder"),
        ({"erase": ["cat"], "step": 5}, "Unknown field"),
        ("not an object", "JSON object"),
    ],
)
def test_bad_input_is_422_with_what_to_fix_and_writes_nothing(webui: FakeWebUI, body, says: str) -> None:
    response = client().post(f"{URL}/erase", json=body)
    assert response.status_code == 422 and says in response.json()["detail"]
    assert not webui.lora_dir.exists() and webui.state.begun == 0


def test_no_model_loaded_is_422(webui: FakeWebUI) -> None:
    webui.load(None)
    response = client().post(f"{URL}/erase", json={"erase": ["cat"], "method": "esd", "steps": 1})
    assert response.status_code == 422 and "No model is loaded" in response.json()["detail"]


def test_a_second_erasure_while_one_runs_is_409_at_once(webui: FakeWebUI) -> None:
    from a1111.jobs import exclusive_run

    with exclusive_run():
        response = client().post(f"{URL}/erase", json={"erase": ["cat"]})
    assert response.status_code == 409 and "Another concept erasure is running" in response.json()["detail"]


def test_an_interrupted_erasure_is_409_and_writes_nothing(webui: FakeWebUI) -> None:
    webui.state.interrupt_at = 1
    body = {"erase": ["cat"], "method": "esd", "steps": 4, "name": "no-cat", "settings": FAST}
    response = client().post(f"{URL}/erase", json=body)
    assert response.status_code == 409 and "training at step 1" in response.json()["detail"]
    assert not (webui.lora_dir / "no-cat.safetensors").exists()


def test_api_auth_protects_the_routes_as_it_does_the_webuis(webui: FakeWebUI) -> None:
    guarded = client({"alice": "secret"})
    assert guarded.get(f"{URL}/methods").status_code == 401
    assert guarded.get(f"{URL}/methods", auth=("alice", "wrong")).status_code == 401
    assert guarded.get(f"{URL}/methods", auth=("alice", "secret")).status_code == 200


def test_routes_exist_only_where_the_webuis_api_does(webui: FakeWebUI) -> None:
    from a1111 import api

    webui.shared.cmd_opts.api_auth = "alice:secret,bob:pw"
    app = FastAPI()
    api.on_app_started(None, app)
    assert TestClient(app).get(f"{URL}/methods", auth=("bob", "pw")).status_code == 200
    webui.shared.cmd_opts.api = False
    quiet = FastAPI()
    api.on_app_started(None, quiet)
    assert TestClient(quiet).get(f"{URL}/methods").status_code == 404


def test_the_model_route_names_the_loaded_model_and_hashes_every_weight(webui: FakeWebUI) -> None:
    answer = client().get(f"{URL}/model", params={"exact": True}).json()
    assert answer["name"] == "tiny-sd1" and answer["arch"] == "sd1" and len(answer["sha256"]) == 64
    unet = webui.shared.sd_model.model.diffusion_model
    with torch.no_grad():
        next(unet.parameters()).view(-1)[0] += 1e-3  # one value changed anywhere changes the exact hash
    changed = client().get(f"{URL}/model", params={"exact": True}).json()
    assert changed["sha256"] != answer["sha256"]
    webui.load(None)
    assert client().get(f"{URL}/model").status_code == 422


def test_out_of_memory_is_503_with_what_to_do(webui: FakeWebUI, monkeypatch) -> None:
    import a1111.api
    from erasure_core.errors import ResourceError

    def out_of_memory(request, host):
        raise ResourceError("Out of memory on cuda while erasing: ... Free memory (close other models or generations)")

    monkeypatch.setattr(a1111.api, "run_job", out_of_memory)
    response = client().post(f"{URL}/erase", json={"erase": ["cat"]})
    assert response.status_code == 503 and "Free memory" in response.json()["detail"]


def test_check_says_whether_a_saved_erasure_held_on_the_loaded_checkpoint(webui: FakeWebUI) -> None:
    body = {"erase": ["cat"], "keep": ["dog"], "method": "esd", "steps": 2, "name": "no-cat", "settings": FAST}
    assert client().post(f"{URL}/erase", json=body).status_code == 200
    weights = [p.detach().clone() for p in webui.shared.sd_model.model.parameters()]

    none = client().post(f"{URL}/check", json={"lora": "no-cat", "strength": 0.0}).json()
    assert none["held"] is False and "did not hold on this model for cat: cat 0.00" in none["verdict"]
    full = client().post(f"{URL}/check", json={"lora": "no-cat"}).json()
    erasure = next(r["erasure"] for r in full["audit"]["rows"] if r["prompt"] == "cat")
    made_on = float(re.search(r"cat \d\.\d\d \(made-on model: (\d\.\d\d)\)", full["verdict"]).group(1))
    assert erasure > 0 and abs(erasure - made_on) <= 0.02 and full["held"] is True  # as its own final audit said
    assert all(torch.equal(a, b) for a, b in zip(weights, webui.shared.sd_model.model.parameters(), strict=True))

    for bad, says in [
        ({"lora": "missing"}, "No LoRA named 'missing'"),
        ({"lora": "../../etc/passwd"}, "leave the loras folder"),
        ({"lora": "no-cat", "strength": "high"}, "must be a number"),
        ({"lora": "no-cat", "strenght": 1}, "Unknown field"),
    ]:
        response = client().post(f"{URL}/check", json=bad)
        assert response.status_code == 422 and says in response.json()["detail"], (bad, response.text)


def test_attack_audit_tries_to_bring_a_saved_erasure_back_and_refuses_bad_requests(
    webui: FakeWebUI, monkeypatch
) -> None:
    import erasure_core.attack

    monkeypatch.setattr(
        erasure_core.attack, "UNKNOWN_SHARE", 10.0
    )  # a random model draws nothing (tested on the demo)
    body = {"erase": ["cat"], "method": "esd", "steps": 2, "name": "no-cat", "settings": FAST}
    assert client().post(f"{URL}/erase", json=body).status_code == 200
    weights = [p.detach().clone() for p in webui.shared.sd_model.model.parameters()]
    flags = [p.requires_grad for p in webui.shared.sd_model.model.parameters()]

    response = client().post(
        f"{URL}/attack",
        json={"lora": "no-cat", "attacks": ["sweep", "soft"], "budget": 16, "samples": 1, "held_out": 1},
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["concept"] == "cat" and set(answer["attacks"]) == {"sweep", "soft"}
    assert 0.0 <= answer["success_rate"] <= 1.0 and "not a proof" in answer["text"]
    assert all(torch.equal(a, b) for a, b in zip(weights, webui.shared.sd_model.model.parameters(), strict=True))
    assert flags == [p.requires_grad for p in webui.shared.sd_model.model.parameters()]

    for bad, says in [
        ({"lora": "missing"}, "No LoRA named 'missing'"),
        ({"lora": "no-cat", "budget": 0}, "more than 0 seconds"),
        ({"lora": "no-cat", "attacks": ["guess"]}, "Unknown attack"),
        ({"lora": "no-cat", "budjet": 5}, "Unknown field"),
        ({"lora": "no-cat", "budget": "long"}, "number of seconds"),
        ({"lora": "no-cat", "held_out": 0}, "at least 1 latent"),
    ]:
        response = client().post(f"{URL}/attack", json=bad)
        assert response.status_code == 422 and says in response.json()["detail"], (bad, response.text)


def test_an_erasure_continues_from_a_saved_lora_on_the_loaded_checkpoint(webui: FakeWebUI) -> None:
    """Top a LoRA up on another checkpoint: the second run starts from the first one's file and says so."""
    body = {"erase": ["cat"], "method": "esd", "steps": 2, "settings": FAST | {"until_erased": False}}
    first = client().post(f"{URL}/erase", json={**body, "name": "no-cat"}).json()
    second = client().post(f"{URL}/erase", json={**body, "name": "no-cat-topped", "resume": "no-cat"}).json()
    assert second["resumed_from"] == "no-cat" and second["previous_steps"] == first["steps_trained"]
    assert "Adam starts afresh" in second["resumed_optimizer"]  # no --save-state file beside the first one
    mismatch = client().post(f"{URL}/erase", json={**body, "method": "uce", "resume": "no-cat"})
    assert mismatch.status_code == 422
    missing = client().post(f"{URL}/erase", json={**body, "resume": "nothing-here"})
    assert missing.status_code == 422 and "No LoRA named 'nothing-here'" in missing.json()["detail"]
