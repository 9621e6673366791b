"""Everything that reaches into the running A1111 or Forge WebUI: its loaded model, progress bar and Interrupt, the
GPU queue, the Lora folder and list, txt2img, and the API's credentials. The only module of the adapter that imports
the WebUI's own modules (hosts.md §9).
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from modules import devices, shared

from erasure_core import Callbacks, ModelError
from erasure_core.frontend import INFO_CONCEPT, INFO_FOUND, INFO_LOSS, INFO_PHASE, LastErasure
from erasure_core.frontend.charts import loss_chart

from .backend import is_forge

JOB = "concept-erasure"
LIVE_CHART_EVERY_S = 1.5  # the loss curve goes to the WebUI's live preview at most this often
PREVIEW_SAMPLER = "Euler"  # not ancestral: before and after differ by the LoRA alone


class WebUIHost:
    """The `jobs.Host` of a running WebUI."""

    def sd_model(self) -> Any:
        """The loaded model; Forge loads the checkpoint chosen in the UI on first use, as its generations do."""
        from modules import sd_models

        reload = getattr(sd_models, "forge_model_reload", None)
        if reload is not None:
            try:
                reload()
            except ValueError as exc:  # Forge: "You do not have any model! ..."
                raise ModelError(f"Forge could not load a checkpoint: {exc}") from exc
        return shared.sd_model

    def lora_folder(self) -> Path:
        return Path(shared.cmd_opts.lora_dir)

    def refresh_loras(self) -> None:
        """Re-read the Lora folder, so `/sdapi/v1/loras` and the Lora tab list the new file at once."""
        networks = sys.modules.get("networks")  # the built-in Lora extension's module (A1111 and Forge)
        if networks is not None and hasattr(networks, "list_available_networks"):
            networks.list_available_networks()

    def active_networks(self) -> list | None:
        """A1111 merges active LoRAs into the weights; its list of them (Forge patches clones instead: None)."""
        if is_forge(shared.sd_model):
            return None
        return getattr(sys.modules.get("networks"), "loaded_networks", None)

    def load_model_gpu(self) -> Callable[[Any], Any] | None:
        if not is_forge(shared.sd_model):
            return None
        from backend import memory_management  # Forge's own package

        return memory_management.load_model_gpu

    def clip_skip(self) -> int:
        return int(getattr(shared.opts, "CLIP_stop_at_last_layers", 1) or 1)

    def callbacks(self) -> Callbacks:
        return progress_callbacks(shared.state)

    def txt2img(self, prompts: Sequence[str], seed: int, size: int, steps: int, cfg: float) -> list[Any]:
        """One image per prompt with the WebUI's own pipeline (its LoRA loader reads `<lora:...>` tags), unsaved."""
        from modules import processing

        state = shared.state
        state.job_count = max(state.job_count, 0) + 1
        p = processing.StableDiffusionProcessingTxt2Img(
            sd_model=shared.sd_model,
            prompt=list(prompts),
            negative_prompt="",
            seed=seed,
            sampler_name=PREVIEW_SAMPLER,
            batch_size=len(prompts),
            n_iter=1,
            steps=steps,
            cfg_scale=cfg,
            width=size,
            height=size,
            do_not_save_samples=True,
            do_not_save_grid=True,
        )
        try:
            return list(processing.process_images(p).images)[: len(prompts)]
        finally:
            p.close()

    def release_memory(self) -> None:
        devices.torch_gc()


def progress_callbacks(state: Any) -> Callbacks:
    """Engine callbacks that drive the WebUI's progress bar, ETA and live preview (the loss curve) and stop on its
    Interrupt button (or `/sdapi/v1/interrupt`)."""
    losses: list[float] = []
    erasure = LastErasure()
    last_chart = [0.0]

    def on_step(step: int, total: int, info: dict[str, Any]) -> None:
        phase = info.get(INFO_PHASE, "train")
        if INFO_LOSS in info:
            losses.append(float(info[INFO_LOSS]))
        text = {"search": "Searching the vocabulary", "audit": "Auditing"}.get(phase, f"Erasing: step {step}/{total}")
        if phase == "train" and INFO_CONCEPT in info:
            text += f", {info[INFO_CONCEPT]}"
            if INFO_FOUND in info:
                text += f" (found: {info[INFO_FOUND]})"
            if losses:
                text += f", loss {losses[-1]:.4g}"
        measured = erasure.update(info)
        if phase == "train" and measured:
            text += f"; erasure {measured}"
        state.textinfo = text
        state.job_count = max(state.job_count, 1)
        state.sampling_steps = total
        state.sampling_step = step
        now = time.monotonic()
        if len(losses) > 1 and (now - last_chart[0] >= LIVE_CHART_EVERY_S or step == total):
            last_chart[0] = now
            from PIL import Image

            state.assign_current_image(Image.fromarray(loss_chart(losses)))
        if phase == "audit":
            state.nextjob()  # training done; a preview that follows counts as the next job

    return Callbacks(on_step=on_step, should_stop=lambda: bool(state.interrupted))


def gpu_queue() -> Any:
    """The WebUI's queue lock: held, no generation runs (and no other job waits its turn)."""
    from modules import call_queue

    return call_queue.queue_lock


@contextlib.contextmanager
def webui_job() -> Iterator[None]:
    """Hold the WebUI's GPU queue and its progress state for a job the API started (the tab gets both from
    `wrap_gradio_gpu_call`): a generation and an erasure never run at once."""
    with gpu_queue():
        shared.state.begin(job=JOB)
        try:
            yield
        finally:
            shared.state.end()


def api_credentials() -> dict[str, str]:
    """`--api-auth user:password,user2:password2` as the WebUI parses it (empty when the API is open)."""
    text = getattr(shared.cmd_opts, "api_auth", None) or ""
    pairs = (item.strip().split(":", 1) for item in text.split(",") if ":" in item)
    return {user: password for user, password in pairs}


def api_enabled() -> bool:
    return bool(getattr(shared.cmd_opts, "api", False) or getattr(shared.cmd_opts, "nowebui", False))
