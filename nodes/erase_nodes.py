"""Concept List and Erase Concept (ComfyUI V3 nodes). Thin: parsing is in `settings`/`concepts`, work in `training`."""

from __future__ import annotations

from comfy_api.latest import io, ui

from ..erasure_core.frontend import LAYER_SET_HELP
from ..erasure_core.frontend.concepts import PRESETS, ConceptList, merge_presets
from ..erasure_core.frontend.settings import (
    LAYER_CHOICES,
    MAX_STEPS,
    METHODS,
    NOT_UCE,
    STEPS_HELP,
    UCE_RANK,
    WIDGET_DEFAULTS,
    build_config,
    ignored_widgets_note,
)
from .training import run_erasure

Concepts = io.Custom("CONCEPTS")
CATEGORY = "concept erasure"


def seed_input(default: int = 0) -> io.Int.Input:
    """A fixed seed: no "randomize after generate" control, which would make a re-queued workflow retrain."""
    return io.Int.Input("seed", default=default, min=0, max=2**31 - 1, control_after_generate=False)


class ConceptListNode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="ConceptErasureConceptList",
            display_name="Concept List",
            category=CATEGORY,
            description="Concepts to erase and to keep, one per line; 'concept: 1.5' or '(concept:1.5)' sets a weight.",
            inputs=[
                io.Combo.Input("preset", options=list(PRESETS), default="custom", tooltip="Start from a known list."),
                io.String.Input("erase", multiline=True, default="", tooltip="One concept to erase per line."),
                io.String.Input(
                    "keep", multiline=True, default="", tooltip="One concept to keep per line (optional)."
                ),
            ],
            outputs=[Concepts.Output(display_name="concepts")],
        )

    @classmethod
    def execute(cls, preset: str, erase: str, keep: str) -> io.NodeOutput:
        concepts: ConceptList = merge_presets(preset, erase, keep)
        return io.NodeOutput(concepts, ui=ui.PreviewText(concepts.summary()))


class EraseConceptNode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        layer_help = "; ".join(f"{k}: {v}" for k, v in LAYER_SET_HELP.items())
        return io.Schema(
            node_id="ConceptErasureErase",
            display_name="Erase Concept",
            category=CATEGORY,
            description="Fine-tune a LoRA that erases concepts from this model (ESD, EAP, AGE or UCE).",
            inputs=[
                io.Model.Input("model"),
                io.Clip.Input("clip", tooltip="The CLIP of the same checkpoint: the concepts are encoded with it."),
                Concepts.Input("concepts", optional=True, tooltip="From a Concept List node."),
                io.String.Input("erase", multiline=True, default="", tooltip="Concepts to erase, one per line."),
                io.String.Input("keep", multiline=True, default="", tooltip="Concepts to keep, one per line."),
                io.Combo.Input("method", options=list(METHODS), default="eap"),
                io.Combo.Input("layers", options=list(LAYER_CHOICES), default="method default", tooltip=layer_help),
                io.Int.Input("steps", default=WIDGET_DEFAULTS["steps"], min=1, max=MAX_STEPS, tooltip=STEPS_HELP),
                io.Float.Input(
                    "learning_rate",
                    default=WIDGET_DEFAULTS["lr"],
                    min=1e-7,
                    max=1.0,
                    step=1e-5,
                    tooltip=f"ESD, EAP, AGE. {NOT_UCE}",
                ),
                io.Int.Input(
                    "rank", default=WIDGET_DEFAULTS["rank"], min=1, max=128, tooltip=f"LoRA rank. {UCE_RANK}"
                ),
                seed_input(WIDGET_DEFAULTS["seed"]),
                io.LoraModel.Input(
                    "resume",
                    optional=True,
                    tooltip="Continue training from this erasure LoRA (same method, concepts, layers and rank), e.g. "
                    "to top it up on a fine-tune of the model it was made on: Load Erasure LoRA's lora output.",
                ),
                io.Boolean.Input(
                    "robust",
                    default=False,
                    optional=True,
                    tooltip="ESD, EAP: also erase a soft prompt kept adversarial to the edit as it trains, so that "
                    "recovery attacks find less; trains the whole step budget (see the Erasure Attack Audit).",
                ),
                io.String.Input(
                    "advanced",
                    multiline=True,
                    default="",
                    optional=True,
                    tooltip="Other engine settings, one 'name = value' per line (e.g. negative_guidance = 2).",
                ),
            ],
            outputs=[
                io.Model.Output(display_name="MODEL"),
                io.LoraModel.Output(display_name="lora"),
                io.LossMap.Output(display_name="loss"),
                io.String.Output(display_name="audit"),
            ],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def execute(
        cls,
        model,
        clip,
        erase: str,
        keep: str,
        method: str,
        layers: str,
        steps: int,
        learning_rate: float,
        rank: int,
        seed: int,
        concepts: ConceptList | None = None,
        advanced: str = "",
        resume: dict | None = None,
        robust: bool = False,
    ) -> io.NodeOutput:
        config = build_config(
            concepts, erase, keep, method, layers, steps, learning_rate, rank, seed, advanced, robust
        )
        out = run_erasure(model, clip, config, cls.hidden.unique_id, resume=resume)
        header = "(from the cache: same model, prompts and settings)\n" if out.cached else ""
        if note := ignored_widgets_note(method, layers):
            header += note + "\n"
        return io.NodeOutput(
            out.model,
            out.lora,
            {"loss": out.losses},
            header + out.audit_text,
            ui=ui.PreviewText(header + out.audit_text),
        )
