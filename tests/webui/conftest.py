"""A fake running WebUI: the `modules.*` objects the adapter imports (A1111's names, which Forge keeps), the Lora
extension's `networks` module and Forge's memory manager, installed in `sys.modules` for one test."""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest
from PIL import Image

from .fakes import FakeA1111Model, FakeForgeModel, FakeLoraExtension


class FakeState:
    """`shared.state`: the progress fields the WebUI's progress API reads, Interrupt, the live preview."""

    def __init__(self) -> None:
        self.job = ""
        self.job_count = self.job_no = self.sampling_step = self.sampling_steps = 0
        self.interrupted = False
        self.textinfo = None
        self.current_image = None
        self.history: list[tuple[int, int, str | None]] = []
        self.images = 0
        self.begun = self.ended = 0
        self.interrupt_at: int | None = None  # press Interrupt when the run reports this step

    def begin(self, job: str = "(unknown)") -> None:
        self.begun += 1
        self.job, self.job_count, self.job_no, self.interrupted = job, -1, 0, False

    def end(self) -> None:
        self.ended += 1
        self.job, self.job_count = "", 0

    def interrupt(self) -> None:
        self.interrupted = True

    def nextjob(self) -> None:
        self.job_no += 1
        self.sampling_step = 0

    def assign_current_image(self, image) -> None:
        self.current_image = image
        self.images += 1

    def __setattr__(self, name, value) -> None:
        super().__setattr__(name, value)
        if name == "sampling_step" and hasattr(self, "history"):
            self.history.append((value, self.sampling_steps, self.textinfo))
            if value == self.interrupt_at:
                self.interrupted = True


class FakeWebUI(SimpleNamespace):
    """Handles on what a test may look at or change: the loaded model, the Lora folder, calls the WebUI saw."""

    def load(self, sd_model) -> None:
        self.shared.sd_model = sd_model


def _module(name: str, **attrs) -> ModuleType:
    module = ModuleType(name)
    module.__dict__.update(attrs)
    return module


@pytest.fixture
def webui(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeWebUI:
    lora_dir = tmp_path / "models" / "Lora"
    state = FakeState()
    shared = _module(
        "modules.shared",
        sd_model=FakeA1111Model("sd1"),
        state=state,
        cmd_opts=SimpleNamespace(lora_dir=str(lora_dir), api=True, nowebui=False, api_auth=None),
        opts=SimpleNamespace(CLIP_stop_at_last_layers=1),
    )
    gc_calls = []
    devices = _module("modules.devices", torch_gc=lambda: gc_calls.append(1))
    queue_lock = threading.Lock()

    def wrap_gradio_gpu_call(func, extra_outputs=None):
        def wrapped(*args):
            with queue_lock:
                state.begin(job=args[0])
                try:
                    return func(*args)
                except Exception as exc:  # the WebUI shows it as HTML after the extra outputs
                    return [*(extra_outputs or [None]), f"<div class='error'>{exc}</div>"]
                finally:
                    state.end()
                    state.interrupted = False

        return wrapped

    call_queue = _module("modules.call_queue", queue_lock=queue_lock, wrap_gradio_gpu_call=wrap_gradio_gpu_call)
    finished = []
    progress = _module("modules.progress", finish_task=finished.append, add_task_to_queue=lambda _: None)
    drawn: list[list[str]] = []

    class Txt2Img(SimpleNamespace):
        def close(self) -> None:
            self.closed = True

    def process_images(p):
        drawn.append(list(p.prompt))
        state.nextjob()
        colour = [(hash(prompt) % 200, p.seed % 255, len(prompt) * 9 % 255) for prompt in p.prompt]
        return SimpleNamespace(images=[Image.new("RGB", (p.width, p.height), c) for c in colour])

    processing = _module("modules.processing", StableDiffusionProcessingTxt2Img=Txt2Img, process_images=process_images)
    sd_models = _module("modules.sd_models")
    tabs, started = [], []
    script_callbacks = _module("modules.script_callbacks", on_ui_tabs=tabs.append, on_app_started=started.append)
    modules = _module("modules", shared=shared, devices=devices, call_queue=call_queue, progress=progress)
    modules.processing, modules.script_callbacks, modules.sd_models = processing, script_callbacks, sd_models
    modules.__path__ = []
    networks = FakeLoraExtension()
    memory_management = _module(
        "backend.memory_management", load_model_gpu=lambda p: shared.sd_model.load_model_gpu(p)
    )
    forge_backend = _module("backend", memory_management=memory_management)
    forge_backend.__path__ = []
    for name, module in {
        "modules": modules,
        "modules.shared": shared,
        "modules.devices": devices,
        "modules.call_queue": call_queue,
        "modules.progress": progress,
        "modules.processing": processing,
        "modules.script_callbacks": script_callbacks,
        "modules.sd_models": sd_models,
        "networks": networks,
        "backend": forge_backend,
        "backend.memory_management": memory_management,
    }.items():
        monkeypatch.setitem(sys.modules, name, module)
    import a1111

    for name in ("host", "api", "tab"):  # imported afresh, bound to this test's fakes
        monkeypatch.delitem(sys.modules, f"a1111.{name}", raising=False)
        monkeypatch.delattr(a1111, name, raising=False)
    return FakeWebUI(
        shared=shared,
        state=state,
        lora_dir=lora_dir,
        networks=networks,
        gc_calls=gc_calls,
        finished_tasks=finished,
        drawn=drawn,
        tabs=tabs,
        app_started=started,
        queue_lock=queue_lock,
        sd_models=sd_models,
    )


@pytest.fixture
def forge(webui: FakeWebUI) -> FakeWebUI:
    """Forge starts with a placeholder and loads the chosen checkpoint when a job first needs it."""
    webui.load(SimpleNamespace(is_sd1=False))  # Forge's FakeInitialModel
    webui.reloads = []

    def forge_model_reload():
        webui.reloads.append(1)
        if not isinstance(webui.shared.sd_model, FakeForgeModel):
            webui.load(FakeForgeModel("sd1"))
        return webui.shared.sd_model, len(webui.reloads) == 1

    webui.sd_models.forge_model_reload = forge_model_reload
    return webui
