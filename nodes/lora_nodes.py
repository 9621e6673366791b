"""Save Erasure LoRA and Load Erasure LoRA (ComfyUI V3 nodes)."""

from __future__ import annotations

import folder_paths
from comfy_api.latest import io, ui

from ..erasure_core import ModelError
from ..erasure_core.frontend import lora_from_tensors, save_lora_file
from ..erasure_core.frontend.lora_files import next_free_name, resolve_target
from ..erasure_core.frontend.lora_info import describe
from ..erasure_core.frontend.verdict import check_settings, made_on_scores, transfer_verdict
from .runtime import ErasureLora, loras_folder, read_lora_file
from .training import apply_lora, audit_on_model

CATEGORY = "concept erasure"


class SaveErasureLoraNode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="ConceptErasureSaveLora",
            display_name="Save Erasure LoRA",
            category=CATEGORY,
            description="Write the LoRA as a kohya .safetensors into models/loras, where every LoRA loader finds it.",
            inputs=[
                io.LoraModel.Input("lora"),
                io.String.Input("name", default="erased/erasure", tooltip="File name; subfolders allowed."),
                io.Combo.Input(
                    "if_exists",
                    options=["add number", "fail", "overwrite"],
                    default="add number",
                    tooltip="What to do when a file of that name exists.",
                ),
            ],
            outputs=[io.String.Output(display_name="lora_name")],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, lora: dict, name: str, if_exists: str) -> io.NodeOutput:
        folder = loras_folder()
        if not any(k.startswith("lora_unet_") for k in lora):
            raise ModelError("This LORA_MODEL has no kohya UNet tensors ('lora_unet_*'); it cannot be saved as ours.")
        if if_exists == "add number":
            name = next_free_name(folder, name)
        target = resolve_target(folder, name, overwrite=if_exists == "overwrite")
        target.parent.mkdir(parents=True, exist_ok=True)
        metadata = dict(getattr(lora, "metadata", {}) or {})
        metadata["ss_output_name"] = target.stem  # A1111 shows this as the LoRA's alias
        tensors = {k: v.contiguous() for k, v in lora.items() if k.startswith("lora_unet_")}
        save_lora_file(tensors, target, metadata)
        relative = target.relative_to(folder.resolve()).as_posix()
        return io.NodeOutput(relative, ui=ui.PreviewText(f"saved {relative} in {folder}"))


class LoadErasureLoraNode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="ConceptErasureLoadLora",
            display_name="Load Erasure LoRA",
            category=CATEGORY,
            description="Apply an erasure LoRA to any MODEL (e.g. a community checkpoint) and show what it erased.",
            inputs=[
                io.Model.Input("model"),
                io.Combo.Input(
                    "lora_file",
                    options=folder_paths.get_filename_list("loras"),
                    tooltip="A LoRA in models/loras (press R to refresh the list after saving one).",
                ),
                io.Float.Input("strength", default=1.0, min=-10.0, max=10.0, step=0.05),
                io.Boolean.Input(
                    "check",
                    default=False,
                    tooltip="Audit the erasure on this model (a fine-tune or merge of the one it was made on) and "
                    "say whether it held there. Needs the model's CLIP.",
                ),
                io.Clip.Input("clip", optional=True, tooltip="This model's CLIP, for 'check'."),
            ],
            outputs=[
                io.Model.Output(display_name="MODEL"),
                io.LoraModel.Output(display_name="lora"),
                io.String.Output(display_name="info"),
            ],
        )

    @classmethod
    def execute(cls, model, lora_file: str, strength: float, check: bool, clip=None) -> io.NodeOutput:
        path = folder_paths.get_full_path("loras", lora_file)
        if path is None:
            raise ModelError(f"LoRA file not found: {lora_file}. Press R to refresh the list, or check models/loras.")
        lora: ErasureLora = read_lora_file(path)
        info = f"{lora_file}: {describe(lora.metadata)}"
        if check:
            if clip is None:
                raise ModelError("'check' audits the erasure on this model: connect the model's CLIP to 'clip'.")
            config, weights = check_settings(lora_from_tensors(lora, lora.metadata, lora_file), strength)
            report = audit_on_model(model, clip, weights, config)
            verdict = transfer_verdict(report, config.erased_at, reference=made_on_scores(weights))[1]
            info += "\n" + verdict + "\n" + report.table()
        return io.NodeOutput(apply_lora(model, lora, strength), lora, info, ui=ui.PreviewText(info))
