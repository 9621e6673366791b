"""Start a real headless A1111 or Forge WebUI with this extension installed, and drive it over its HTTP API.

Needs a WebUI checkout with its `repositories/` (`A1111_ROOT` / `FORGE_ROOT`) and a Python that runs it
(`A1111_PYTHON` / `FORGE_PYTHON`, default `<root>/venv/bin/python`); the tests skip without them. Everything the
test writes lives in a `--data-dir` made for the session (the extension is linked into its `extensions/`), so the
checkout is not modified. The server runs on the CPU, on 127.0.0.1, offline.
"""

from __future__ import annotations

import base64
import io
import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
EXTENSION = "concept-erasure"
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True)
class Host:
    kind: str  # "a1111" or "forge"
    root: Path
    python: Path
    flags: tuple[str, ...]


CPU_FLAGS = {
    "a1111": ("--use-cpu", "all", "--no-half", "--precision", "full"),
    "forge": ("--always-cpu",),
}


def host_from_env(kind: str) -> Host | None:
    """The WebUI the environment points at (`A1111_ROOT` or `FORGE_ROOT`), or None."""
    root = os.environ.get(f"{kind.upper()}_ROOT")
    if not root:
        return None
    root_path = Path(root)
    python = Path(os.environ.get(f"{kind.upper()}_PYTHON", root_path / "venv" / "bin" / "python"))
    flags = CPU_FLAGS[kind]
    if kind == "forge":  # gradio 4 serves the WebUI's own scripts only from allowed paths, and --data-dir moves them
        flags += ("--gradio-allowed-path", str(root_path))
    return Host(kind, root_path, python, flags)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class HTTPError(Exception):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body[:500]}")
        self.status, self.body = status, body

    def json(self) -> Any:
        return json.loads(self.body)


class WebUIServer:
    """One WebUI process over a data dir `base` (extensions/, models/, config.json, outputs)."""

    def __init__(self, host: Host, base: Path) -> None:
        self.host = host
        self.base = base
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = base / "webui.log"
        self.process: subprocess.Popen | None = None

    @property
    def loras(self) -> Path:
        return self.base / "models" / "Lora"

    @property
    def checkpoint(self) -> Path:
        return self.base / "models" / "Stable-diffusion" / "random_sd15.safetensors"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False", DO_NOT_TRACK="1")
        env.setdefault("OMP_NUM_THREADS", "2")
        env.setdefault("SD_WEBUI_LOG_LEVEL", "DEBUG")  # A1111 says which LoRA keys matched nothing only at debug level
        env["PYTHONPATH"] = str(self.host.root)
        return env

    def prepare(self, checkpoint: Path) -> None:
        (self.base / "extensions").mkdir(parents=True, exist_ok=True)
        (self.base / "extensions" / EXTENSION).symlink_to(REPO, target_is_directory=True)
        self.checkpoint.parent.mkdir(parents=True, exist_ok=True)
        self.checkpoint.symlink_to(checkpoint)

    def run_installers(self) -> str:
        """The WebUI's own `launch_utils.run_extensions_installers()` (`--skip-prepare-environment` skips it), with
        every package the WebUI's Python has pinned as a constraint, so no installer can move them."""
        freeze = subprocess.run(
            [str(self.host.python), "-m", "pip", "freeze", "--exclude-editable"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        constraints = self.base / "constraints.txt"
        constraints.write_text("\n".join(line for line in freeze.splitlines() if " @ " not in line) + "\n")
        code = (
            f"import sys; sys.argv = ['launch.py', '--data-dir', {str(self.base)!r}]\n"
            "from modules import launch_utils\n"
            f"launch_utils.run_extensions_installers({str(self.base / 'config.json')!r})\n"
        )
        result = subprocess.run(
            [str(self.host.python), "-c", code],
            cwd=self.host.root,
            env={**self.env(), "PIP_CONSTRAINT": str(constraints)},
            capture_output=True,
            text=True,
            timeout=900,
        )
        return result.stdout + result.stderr

    def start(self, timeout: float = 600) -> None:
        args = [
            str(self.host.python),
            "launch.py",
            "--skip-prepare-environment",
            "--skip-torch-cuda-test",
            "--skip-version-check",
            "--no-download-sd-model",
            *self.host.flags,
            "--api",
            "--loglevel",
            "DEBUG",
            "--data-dir",
            str(self.base),
            "--ckpt",
            str(self.checkpoint),
            "--server-name",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]
        self.log = self.log_path.open("w")
        self.process = subprocess.Popen(
            args, cwd=self.host.root, env=self.env(), stdout=self.log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the WebUI exited ({self.process.returncode}):\n{self.log_text()[-4000:]}")
            try:
                self.get("/concept-erasure/v1/methods", timeout=5)
                return
            except (OSError, HTTPError):
                time.sleep(1)
        raise TimeoutError(f"the WebUI did not answer in {timeout} s:\n{self.log_text()[-4000:]}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        if self.process is not None:
            self.log.close()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # -- HTTP -----------------------------------------------------------------------------------------------
    def request(self, method: str, path: str, payload: Any = None, timeout: float = 900) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with NO_PROXY.open(req, timeout=timeout) as response:
                return json.loads(response.read().decode())
        except urllib.error.HTTPError as exc:
            raise HTTPError(exc.code, exc.read().decode(errors="replace")) from None

    def get(self, path: str, timeout: float = 900) -> Any:
        return self.request("GET", path, timeout=timeout)

    def post(self, path: str, payload: Any = None, timeout: float = 900) -> Any:
        return self.request("POST", path, payload, timeout=timeout)

    def txt2img(self, prompt: str, seed: int = 1, size: int = 64, steps: int = 2):
        """One image as a uint8 array, from the WebUI's own txt2img API."""
        import numpy as np
        from PIL import Image

        payload = {"prompt": prompt, "seed": seed, "steps": steps, "width": size, "height": size}
        answer = self.post("/sdapi/v1/txt2img", {**payload, "sampler_name": "Euler", "cfg_scale": 7})
        image = Image.open(io.BytesIO(base64.b64decode(answer["images"][0].split(",", 1)[-1])))
        return np.asarray(image.convert("RGB")).astype(np.int16)
