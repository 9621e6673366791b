"""Start a real headless ComfyUI with this pack installed, and drive it over its HTTP and websocket API.

Needs a ComfyUI checkout (`COMFYUI_ROOT`); the tests skip without one. The server runs on the CPU, on 127.0.0.1,
with no outbound connections (hosts.md §10), against a base directory made for the test session.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from .torchvision_stub import write_stub

REPO = Path(__file__).resolve().parents[2]
PACK_FOLDER = "concept_erasure"  # the folder name under custom_nodes: web files are served at /extensions/<it>/


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def comfy_env(comfy_root: Path, work: Path) -> dict[str, str]:
    stubs = write_stub(work / "stubs") if not _has_torchvision() else None
    env = dict(os.environ)
    paths = [str(comfy_root)] + ([str(stubs)] if stubs else []) + [env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    env["HF_HUB_OFFLINE"] = "1"
    return env


def _has_torchvision() -> bool:
    try:
        import torchvision  # noqa: F401
    except Exception:
        return False
    return True


def build_checkpoint(comfy_root: Path, work: Path, path: Path) -> None:
    """Write the tiny SD1.5 checkpoint with ComfyUI's own classes, in a child process that can import ComfyUI."""
    code = (
        "import sys; sys.argv=['x','--cpu']\n"
        "import comfy.options; comfy.options.enable_args_parsing()\n"
        f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from tiny_checkpoint import build_sd15_checkpoint\n"
        f"build_sd15_checkpoint({str(path)!r})\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=comfy_root, env=comfy_env(comfy_root, work), check=True)


class ComfyServer:
    """One ComfyUI process. `base` holds models/, custom_nodes/, output/, user/ and temp/."""

    def __init__(self, comfy_root: Path, base: Path, front_end_root: Path | None = None) -> None:
        self.root = comfy_root
        self.base = base
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.client_id = uuid.uuid4().hex
        self.front_end_root = front_end_root
        self.log_path = base / "server.log"
        self.process: subprocess.Popen | None = None

    @property
    def loras(self) -> Path:
        return self.base / "models" / "loras"

    def prepare(self, checkpoint: Path) -> None:
        (self.base / "models" / "checkpoints").mkdir(parents=True, exist_ok=True)
        self.loras.mkdir(parents=True, exist_ok=True)
        link = self.base / "models" / "checkpoints" / checkpoint.name
        if not link.exists():
            link.symlink_to(checkpoint)
        nodes = self.base / "custom_nodes"
        nodes.mkdir(exist_ok=True)
        if not (nodes / PACK_FOLDER).exists():
            (nodes / PACK_FOLDER).symlink_to(REPO, target_is_directory=True)

    def start(self, timeout: float = 120) -> None:
        args = [
            sys.executable, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(self.port),
            "--base-directory", str(self.base), "--disable-auto-launch", "--disable-api-nodes",
            "--database-url", "sqlite:///:memory:",
        ]  # fmt: skip
        if self.front_end_root is not None:
            args += ["--front-end-root", str(self.front_end_root)]
        log = open(self.log_path, "a")  # noqa: SIM115 - closed with the process
        self.process = subprocess.Popen(
            args, cwd=self.root, env=comfy_env(self.root, self.base), stdout=log, stderr=subprocess.STDOUT
        )
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ComfyUI exited at start:\n{self.log()[-4000:]}")
            try:
                self.get("/object_info/ConceptErasureErase")
                return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.5)
        raise RuntimeError(f"ComfyUI did not answer within {timeout} s:\n{self.log()[-4000:]}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # -- HTTP -----------------------------------------------------------------------------------------------
    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=10) as r:
            return json.loads(r.read() or b"null")

    def post(self, path: str, data: dict[str, Any] | None = None) -> Any:
        request = urllib.request.Request(
            self.url + path, data=json.dumps(data or {}).encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as r:
            body = r.read()
        return json.loads(body) if body else None

    def queue(self, prompt: dict[str, Any]) -> str:
        try:
            answer = self.post("/prompt", {"prompt": prompt, "client_id": self.client_id})
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"prompt refused: {exc.read().decode()}") from exc
        return answer["prompt_id"]

    def wait(self, prompt_id: str, timeout: float = 600) -> dict[str, Any]:
        deadline = time.time() + timeout
        while time.time() < deadline:
            history = self.get(f"/history/{prompt_id}")
            if prompt_id in history and history[prompt_id].get("status", {}).get("completed") is not None:
                entry = history[prompt_id]
                if entry["status"].get("status_str") in ("success", "error"):
                    return entry
            if not self.alive():
                raise AssertionError(f"ComfyUI died:\n{self.log()[-4000:]}")
            time.sleep(0.3)
        raise AssertionError(f"prompt {prompt_id} did not finish in {timeout} s")

    def run(self, prompt: dict[str, Any], timeout: float = 600) -> dict[str, Any]:
        return self.wait(self.queue(prompt), timeout)


def messages(entry: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    """The status messages of one history entry of a given kind (e.g. 'execution_error')."""
    return [data for name, data in entry.get("status", {}).get("messages", []) if name == kind]


WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}


def ui_to_api(
    workflow: dict[str, Any], object_info: dict[str, Any], overrides: dict[str, dict[str, Any]] | None = None
) -> dict[str, Any]:
    """Turn a UI-format workflow (what users load, example_workflows/) into the API prompt `/prompt` takes.

    Widget values are matched to inputs in the order the server declares them; `overrides` replaces inputs by
    node type (e.g. fewer steps for a test). Notes and muted nodes are dropped.
    """
    links = {link[0]: link for link in workflow["links"]}
    prompt: dict[str, Any] = {}
    for node in workflow["nodes"]:
        if node.get("mode", 0) != 0 or node["type"] not in object_info:
            continue
        spec = object_info[node["type"]]["input"]
        order = object_info[node["type"]].get("input_order") or {k: list(v) for k, v in spec.items() if k != "hidden"}
        linked = {i["name"]: links[i["link"]] for i in node.get("inputs", []) if i.get("link") is not None}
        values = list(node.get("widgets_values") or [])
        inputs: dict[str, Any] = {}
        for group in ("required", "optional"):
            for name in order.get(group, []):
                declared = spec[group][name]
                kind, options = declared[0], declared[1] if len(declared) > 1 else {}
                if name in linked:
                    link = linked[name]
                    inputs[name] = [str(link[1]), link[2]]
                    if (isinstance(kind, list) or kind in WIDGET_TYPES) and values and not options.get("forceInput"):
                        values.pop(0)  # a widget converted to an input keeps its slot in widgets_values
                elif (isinstance(kind, list) or kind in WIDGET_TYPES) and values:
                    inputs[name] = values.pop(0)
                    if options.get("control_after_generate") and values:
                        values.pop(0)
        inputs.update((overrides or {}).get(node["type"], {}))
        prompt[str(node["id"])] = {"class_type": node["type"], "inputs": inputs}
    return prompt
