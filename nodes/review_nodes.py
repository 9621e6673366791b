"""Before/After Preview and Erasure Audit (ComfyUI V3 nodes): what changed, as pictures and as numbers."""

from __future__ import annotations

import comfy.model_management as mm
import comfy.sample
import comfy.samplers
import comfy.utils
import numpy as np
import torch
from comfy_api.latest import io, ui

from ..erasure_core import ConfigError
from ..erasure_core.frontend import image_grid, lora_from_tensors, preview_rows, row_label
from ..erasure_core.frontend.charts import audit_chart
from ..erasure_core.frontend.concepts import ConceptList
from ..erasure_core.frontend.lora_info import preview_rows_of
from ..erasure_core.frontend.settings import attack_config, attack_text, audit_config
from .erase_nodes import CATEGORY, Concepts, seed_input
from .runtime import to_image_batch, to_uint8
from .training import attack_on_model, audit_on_model

MAX_PROMPTS = 16


def _rows(text: str, concepts: ConceptList | None, lora: dict | None) -> list[tuple[str, str]]:
    """The node's rows as (role, prompt): typed lines, else the connected concepts, else the concepts in the LoRA's
    metadata and the neighbours its audit showed. A typed line is labelled with its role where the concepts or the
    LoRA name it."""
    metadata = getattr(lora, "metadata", None) or {}
    known = [
        *(preview_rows(concepts.erase, concepts.keep) if concepts is not None else []),
        *preview_rows_of(metadata),
    ]
    lines = [" ".join(line.split()) for line in (text or "").splitlines() if line.strip()]
    roles = {prompt.lower(): role for role, prompt in reversed(known)}  # the first role named wins
    rows = [(roles.get(line.lower(), ""), line) for line in lines] or known
    if not rows:
        raise ConfigError("No prompts to preview: type prompts (one per line) or connect the concepts or the lora.")
    if len(rows) > MAX_PROMPTS:
        raise ConfigError(f"{len(rows)} prompts given; the preview draws at most {MAX_PROMPTS}.")
    return rows


def _sample(
    model,
    vae,
    positive,
    negative,
    seed: int,
    steps: int,
    cfg: float,
    sampler: str,
    scheduler: str,
    width: int,
    height: int,
) -> torch.Tensor:
    """One image from CONDITIONINGs (encoded once per prompt and shared by both models)."""
    latent = torch.zeros([1, 4, height // 8, width // 8])
    latent = comfy.sample.fix_empty_latent_channels(model, latent)
    noise = comfy.sample.prepare_noise(latent, seed)
    samples = comfy.sample.sample(
        model, noise, steps, cfg, sampler, scheduler, positive, negative, latent, disable_pbar=True, seed=seed
    )
    return vae.decode(samples)[0]


class BeforeAfterPreviewNode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="ConceptErasureBeforeAfter",
            display_name="Before/After Preview",
            category=CATEGORY,
            description="The same prompts and seed on the original and the erased model, side by side.",
            inputs=[
                io.Model.Input("original"),
                io.Model.Input("erased"),
                io.Clip.Input("clip"),
                io.Vae.Input("vae"),
                io.String.Input("prompts", multiline=True, default="", tooltip="One per line; empty = the concepts."),
                Concepts.Input("concepts", optional=True),
                io.LoraModel.Input("lora", optional=True, tooltip="Its metadata names the concepts to preview."),
                io.String.Input("negative", default="", tooltip="Negative prompt for both models."),
                seed_input(),
                io.Int.Input("steps", default=20, min=1, max=150),
                io.Float.Input("cfg", default=7.0, min=0.0, max=30.0, step=0.5),
                io.Combo.Input("sampler_name", options=comfy.samplers.KSampler.SAMPLERS, default="euler"),
                io.Combo.Input("scheduler", options=comfy.samplers.KSampler.SCHEDULERS, default="normal"),
                io.Int.Input("width", default=512, min=64, max=2048, step=8),
                io.Int.Input("height", default=512, min=64, max=2048, step=8),
            ],
            outputs=[io.Image.Output(display_name="grid")],
            is_output_node=True,
        )

    @classmethod
    def execute(
        cls,
        original,
        erased,
        clip,
        vae,
        prompts: str,
        negative: str,
        seed: int,
        steps: int,
        cfg: float,
        sampler_name: str,
        scheduler: str,
        width: int,
        height: int,
        concepts=None,
        lora=None,
    ) -> io.NodeOutput:
        rows = _rows(prompts, concepts, lora)
        lines = [prompt for _, prompt in rows]
        labels = [row_label(*row) for row in rows]
        bar = comfy.utils.ProgressBar(2 * len(lines))
        before, after = [], []
        negative_cond = clip.encode_from_tokens_scheduled(clip.tokenize(negative))
        for i, prompt in enumerate(lines):
            positive = clip.encode_from_tokens_scheduled(clip.tokenize(prompt))
            for j, (model, out) in enumerate(((original, before), (erased, after))):
                mm.throw_exception_if_processing_interrupted()
                image = _sample(
                    model, vae, positive, negative_cond, seed, steps, cfg, sampler_name, scheduler, width, height
                )
                out.append(to_uint8(image))
                bar.update_absolute(2 * i + j + 1)
        grid = image_grid([[b, a] for b, a in zip(before, after, strict=True)], labels, ["before", "after"], scale=1)
        halves = [
            image_grid([[x] for x in column], labels, [title], scale=1)
            for column, title in ((before, "before"), (after, "after"))
        ]
        grid_tensor = to_image_batch([np.asarray(grid)])
        shown = ui.PreviewImage(grid_tensor, cls=cls).as_dict()
        compare = ui.PreviewImage(to_image_batch([np.asarray(h) for h in halves]), cls=cls).as_dict()
        return io.NodeOutput(grid_tensor, ui={**shown, "erasure_compare": compare["images"]})


class ErasureAuditNode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="ConceptErasureAudit",
            display_name="Erasure Audit",
            category=CATEGORY,
            description="How far an erasure LoRA moves erased, kept and nearby prompts (0 = untouched).",
            inputs=[
                io.Model.Input("model", tooltip="The original model (without the LoRA)."),
                io.Clip.Input("clip"),
                io.LoraModel.Input("lora", tooltip="From Erase Concept or Load Erasure LoRA."),
                io.String.Input(
                    "erase",
                    multiline=True,
                    default="",
                    optional=True,
                    tooltip="Erased concepts, one per line, if the LoRA has no metadata (ours always has).",
                ),
                io.String.Input(
                    "extra_prompts", multiline=True, default="", optional=True, tooltip="More prompts to probe."
                ),
                io.Int.Input("samples", default=2, min=1, max=16, tooltip="Latents per prompt."),
                seed_input(),
            ],
            outputs=[io.String.Output(display_name="report"), io.Image.Output(display_name="chart")],
            is_output_node=True,
        )

    @classmethod
    def execute(
        cls, model, clip, lora: dict, samples: int, seed: int, erase: str = "", extra_prompts: str = ""
    ) -> io.NodeOutput:
        meta = dict(getattr(lora, "metadata", {}) or {})
        config = audit_config(meta, erase, samples, seed)
        weights = lora_from_tensors(lora, meta, "The connected LORA_MODEL")
        extra = tuple(line.strip() for line in (extra_prompts or "").splitlines() if line.strip())
        report = audit_on_model(model, clip, weights, config, extra)
        chart = to_image_batch([audit_chart(report.rows)])
        text = report.table()
        return io.NodeOutput(text, chart, ui={**ui.PreviewImage(chart, cls=cls).as_dict(), "text": [text]})


class ErasureAttackAuditNode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="ConceptErasureAttackAudit",
            display_name="Erasure Attack Audit",
            category=CATEGORY,
            description="Tries to bring an erased concept back (a prompt sweep, a discrete prompt search, a soft-prompt "
            "attack) and reports how often each succeeds. A low rate is not a proof that no attack can.",
            inputs=[
                io.Model.Input("model", tooltip="The original model (without the LoRA)."),
                io.Clip.Input("clip"),
                io.LoraModel.Input("lora", tooltip="From Erase Concept or Load Erasure LoRA."),
                io.String.Input(
                    "concept",
                    default="",
                    optional=True,
                    tooltip="The erased concept to bring back (empty: the LoRA's).",
                ),
                io.Int.Input("budget_seconds", default=240, min=1, max=7200, tooltip="Time for the whole audit."),
                io.Boolean.Input("sweep", default=True, tooltip="Wordings and the text encoder's nearest words."),
                io.Boolean.Input(
                    "discrete", default=True, tooltip="Words prepended to the concept, chosen by gradient."
                ),
                io.Boolean.Input("soft", default=True, tooltip="A soft prompt optimised on the erased model."),
                seed_input(),
            ],
            outputs=[io.String.Output(display_name="report")],
            is_output_node=True,
        )

    @classmethod
    def execute(
        cls,
        model,
        clip,
        lora: dict,
        budget_seconds: int,
        sweep: bool,
        discrete: bool,
        soft: bool,
        seed: int,
        concept: str = "",
    ) -> io.NodeOutput:
        meta = dict(getattr(lora, "metadata", {}) or {})
        attacks = tuple(name for name, on in (("sweep", sweep), ("discrete", discrete), ("soft", soft)) if on)
        config = attack_config(meta, concept, attacks, budget_seconds, seed)
        weights = lora_from_tensors(lora, meta, "The connected LORA_MODEL")
        text = attack_text(attack_on_model(model, clip, weights, config))
        return io.NodeOutput(text, ui={"text": [text]})
