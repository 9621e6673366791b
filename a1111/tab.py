"""The "Erase Concept" tab: the same form as ComfyUI's Erase Concept node, run through the WebUI's GPU queue with its
progress bar (ETA, live loss curve, the concept being found) and its Interrupt, ending in the audit table and a
before/after grid drawn with the WebUI's txt2img. Plain gradio components only: A1111 ships gradio 3.41, Forge 4.40.
"""

from __future__ import annotations

import html
from typing import Any

import gradio as gr
from modules import progress, shared
from modules.call_queue import wrap_gradio_gpu_call

from erasure_core import ATTACKS, ErasureError
from erasure_core.frontend import DEFAULTS, LAYER_SET_HELP, is_closed_form
from erasure_core.frontend.charts import audit_chart, loss_chart
from erasure_core.frontend.concepts import PRESETS
from erasure_core.frontend.settings import LAYER_CHOICES, MAX_STEPS, METHODS

from .host import WebUIHost
from .jobs import FIELDS, ErasureRequest, JobResult, attack_lora, check_lora, exclusive_run, parse_form, run_job

TITLE = "Erase Concept"
ELEM = "concept_erasure"
# The tab's inputs after the task id, in order: each is a field of jobs.parse_request.
INPUTS = (
    "preset",
    "erase",
    "keep",
    "method",
    "layers",
    "steps",
    "lr",
    "rank",
    "seed",
    "name",
    "overwrite",
    "preview",
    "preview_size",
    "settings",
    "resume",
    "robust",
)


def results_html(job: JobResult) -> str:
    r = job.result
    lines = [
        f"<p>Saved <b>{html.escape(job.path.name)}</b> in {html.escape(str(job.path.parent))}. "
        f"Use it in a prompt as <code>{html.escape(job.prompt_tag)}</code>.</p>",
        f"<p>{r.config.method.upper()}: erased {html.escape(', '.join(r.config.erase))}"
        + (f"; kept {html.escape(', '.join(r.config.keep))}" if r.config.keep else "")
        + f". Training {job.timings.get('training_s', 0):.1f} s, {r.unet_evals} UNet evaluations"
        + (f", preview {job.timings['preview_s']:.1f} s" if "preview_s" in job.timings else "")
        + ".</p>",
        f"<p>{html.escape(r.stop_reason())}</p>",
    ]
    if r.resumed_from:
        lines.append(
            f"<p>Continued from {html.escape(r.resumed_from)} ({r.previous_steps} steps before this run; "
            f"optimizer: {html.escape(str(r.resumed_optimizer))}).</p>"
        )
    for concept, words in r.neighbours.items():
        lines.append(
            f"<p>Neighbours of '{html.escape(concept)}' (audited): {html.escape(', '.join(words) or '-')}</p>"
        )
    for concept, words in r.found.items():
        lines.append(
            f"<p>Words the concept search settled on for '{html.escape(concept)}': "
            f"{html.escape(', '.join(words[:8]))}</p>"
        )
    if job.preview_error:
        lines.append(f"<p class='error'>{html.escape(job.preview_error)}</p>")
    if r.audit and r.audit.rows:
        cells = "".join(_audit_row(row) for row in r.audit.rows)
        lines.append(
            "<table><thead><tr><th>prompt</th><th>role</th><th>erasure</th><th>drift</th></tr></thead>"
            f"<tbody>{cells}</tbody></table>"
            "<p>Erasure: how far the erased prompt moved to the method's target (1 = all the way). Drift: how much "
            "the other prompts changed, relative to what the prompt itself does (0 = untouched).</p>"
        )
    return "\n".join(lines)


def _audit_row(row: dict[str, Any]) -> str:
    erasure = f"{row['erasure']:.2f}" if "erasure" in row else "-"
    return (
        f"<tr><td>{html.escape(row['prompt'])}</td><td>{row['role']}</td><td>{erasure}</td>"
        f"<td>{row['drift']:.2f}</td></tr>"
    )


def pictures_of(job: JobResult) -> tuple[Any, Any, Any]:
    """The before/after grid, the loss curve and the audit chart (None where there is none)."""
    from PIL import Image

    audit = job.result.audit.rows if job.result.audit else []
    return (
        job.grid,
        Image.fromarray(loss_chart(job.result.losses)) if job.result.losses else None,
        Image.fromarray(audit_chart(audit)) if audit else None,
    )


def error_html(error: Exception) -> str:
    return f"<p class='error'>{html.escape(str(error))}</p>"


NO_PICTURES = (None, None, None)


def _run(id_task: str, request: ErasureRequest) -> tuple[Any, ...]:
    try:
        job = run_job(request, WebUIHost())
    except ErasureError as exc:  # a message for the user, not a traceback
        return (*NO_PICTURES, error_html(exc))
    return (*pictures_of(job), results_html(job))


_run_in_queue = wrap_gradio_gpu_call(_run, extra_outputs=list(NO_PICTURES))


def start(id_task: str, *values: Any) -> tuple[Any, ...]:
    """Start pressed: check the form at once, refuse a second run, then wait for the GPU queue and train."""
    try:
        request = parse_form(dict(zip(INPUTS, values, strict=True)))
        with exclusive_run():
            return _run_in_queue(id_task, request)
    except ErasureError as exc:
        progress.finish_task(id_task)  # ends the progress bar the page started for this click
        return (*NO_PICTURES, error_html(exc))


def check_html(answer: dict[str, Any]) -> str:
    rows = "".join(_audit_row(row) for row in answer["audit"]["rows"])
    return f"<p>{html.escape(answer['verdict'])}</p><table>{rows}</table>"


def _check(id_task: str, name: str, strength: float) -> str:
    try:
        return check_html(check_lora(name, float(strength), WebUIHost()))
    except ErasureError as exc:
        return error_html(exc)


_check_in_queue = wrap_gradio_gpu_call(_check, extra_outputs=[])


def check(id_task: str, name: str, strength: float) -> str:
    """Check pressed: audit a saved erasure LoRA on the loaded checkpoint, one job at a time like a run."""
    try:
        with exclusive_run():
            return _check_in_queue(id_task, name, strength)
    except ErasureError as exc:
        return error_html(exc)


def _attack(id_task: str, name: str, concept: str, attacks: list[str], budget: float) -> str:
    try:
        request = {"lora": name, "concept": concept, "attacks": list(attacks or []), "budget": float(budget or 0)}
        return f"<pre>{html.escape(attack_lora(request, WebUIHost())['text'])}</pre>"
    except ErasureError as exc:
        return error_html(exc)


_attack_in_queue = wrap_gradio_gpu_call(_attack, extra_outputs=[])


def attack(id_task: str, name: str, concept: str, attacks: list[str], budget: float) -> str:
    """Attack pressed: try to bring a saved erasure LoRA's concept back on the loaded checkpoint, one job at a time."""
    try:
        with exclusive_run():
            return _attack_in_queue(id_task, name, concept, attacks, budget)
    except ErasureError as exc:
        return error_html(exc)


def method_changed(method: str) -> tuple[Any, Any, Any]:
    defaults = DEFAULTS[method]
    trained = not is_closed_form(method)
    return (
        gr.update(value=defaults["steps"], interactive=trained),
        gr.update(value=defaults["lr"], interactive=trained),
        gr.update(value=defaults["rank"], interactive=trained),
    )


def preset_chosen(preset: str) -> tuple[Any, Any]:
    if preset == "custom":
        return gr.update(), gr.update()
    erase, keep = PRESETS[preset]
    return gr.update(value=erase), gr.update(value=keep)


def build() -> gr.Blocks:
    defaults = DEFAULTS["eap"]
    with gr.Blocks(analytics_enabled=False) as blocks:
        with gr.Row():
            with gr.Column(scale=1):
                preset = gr.Dropdown(choices=list(PRESETS), value="custom", label="Preset", elem_id=f"{ELEM}_preset")
                erase = gr.Textbox(
                    lines=4,
                    label="Erase (one concept per line; 'concept: 1.5' or '(concept:1.5)' sets a weight)",
                    placeholder="Van Gogh",
                    elem_id=f"{ELEM}_erase",
                )
                keep = gr.Textbox(lines=3, label="Keep (optional, one per line)", elem_id=f"{ELEM}_keep")
                with gr.Row():
                    method = gr.Dropdown(choices=list(METHODS), value="eap", label="Method", elem_id=f"{ELEM}_method")
                    layers = gr.Dropdown(
                        choices=list(LAYER_CHOICES),
                        value="method default",
                        label="Layers",
                        info="; ".join(f"{k}: {v}" for k, v in LAYER_SET_HELP.items()),
                        elem_id=f"{ELEM}_layers",
                    )
                with gr.Row():
                    steps = gr.Number(
                        value=defaults["steps"], precision=0, label=f"Steps (1-{MAX_STEPS})", elem_id=f"{ELEM}_steps"
                    )
                    lr = gr.Number(value=defaults["lr"], label="Learning rate", elem_id=f"{ELEM}_lr")
                    rank = gr.Number(value=defaults["rank"], precision=0, label="Rank", elem_id=f"{ELEM}_rank")
                    seed = gr.Number(value=defaults["seed"], precision=0, label="Seed", elem_id=f"{ELEM}_seed")
                with gr.Row():
                    name = gr.Textbox(label="LoRA name", placeholder="erased-<concept>", elem_id=f"{ELEM}_name")
                    overwrite = gr.Checkbox(
                        value=False, label="Overwrite a LoRA of that name", elem_id=f"{ELEM}_overwrite"
                    )
                with gr.Row():
                    preview = gr.Checkbox(value=True, label="Before/after grid (txt2img)", elem_id=f"{ELEM}_preview")
                    preview_size = gr.Number(
                        value=0, precision=0, label="Grid image size (0 = the model's)", elem_id=f"{ELEM}_preview_size"
                    )
                with gr.Accordion("Advanced settings", open=False, elem_id=f"{ELEM}_advanced"):
                    settings = gr.Textbox(
                        lines=6,
                        label="Other engine settings, one 'name = value' per line",
                        placeholder="negative_guidance = 2\nanchor = painting",
                        info=FIELDS["settings"].help,
                        elem_id=f"{ELEM}_settings",
                    )
                robust = gr.Checkbox(
                    value=False,
                    label="Robust mode: also erase what a recovery attack finds (ESD, EAP; slower)",
                    elem_id=f"{ELEM}_robust",
                )
                resume = gr.Textbox(
                    label="Continue from LoRA (optional: same method, concepts, layers and rank)",
                    placeholder="e.g. erased-cat, to top it up on the loaded checkpoint",
                    elem_id=f"{ELEM}_resume",
                )
                with gr.Row():
                    submit = gr.Button("Start", variant="primary", elem_id=f"{ELEM}_start")
                    interrupt = gr.Button("Interrupt", elem_id=f"{ELEM}_interrupt")
                with gr.Accordion("Check a saved erasure LoRA on the loaded checkpoint", open=False):
                    with gr.Row():
                        check_name = gr.Textbox(
                            label="LoRA name (as <lora:NAME:1> takes it)", elem_id=f"{ELEM}_check_name"
                        )
                        check_strength = gr.Number(value=1.0, label="Strength", elem_id=f"{ELEM}_check_strength")
                    check_button = gr.Button("Check", elem_id=f"{ELEM}_check")
                    check_result = gr.HTML(elem_id=f"{ELEM}_check_result")
                with gr.Accordion("Attack audit: can the erased concept come back?", open=False):
                    with gr.Row():
                        attack_name = gr.Textbox(
                            label="LoRA name (as <lora:NAME:1> takes it)", elem_id=f"{ELEM}_attack_name"
                        )
                        attack_concept = gr.Textbox(
                            label="Concept (empty: the one the LoRA erased)", elem_id=f"{ELEM}_attack_concept"
                        )
                    with gr.Row():
                        attack_kinds = gr.CheckboxGroup(
                            choices=list(ATTACKS), value=list(ATTACKS), label="Attacks", elem_id=f"{ELEM}_attacks"
                        )
                        attack_budget = gr.Number(value=240, label="Budget (seconds)", elem_id=f"{ELEM}_attack_budget")
                    attack_button = gr.Button("Attack", elem_id=f"{ELEM}_attack")
                    attack_result = gr.HTML(elem_id=f"{ELEM}_attack_result")
            with gr.Column(scale=1, elem_id=f"{ELEM}_results"):
                gr.HTML(elem_id=f"{ELEM}_progress")  # the WebUI's progress bar appears here
                grid = gr.Image(  # shows the live loss curve while training runs
                    label="Before / after", type="pil", interactive=False, elem_id=f"{ELEM}_grid"
                )
                with gr.Row():
                    loss = gr.Image(label="Training loss", type="pil", interactive=False, elem_id=f"{ELEM}_loss")
                    audit = gr.Image(label="Audit", type="pil", interactive=False, elem_id=f"{ELEM}_audit")
                status = gr.HTML(elem_id=f"{ELEM}_status")
        task_id = gr.Textbox(visible=False)
        widgets = {  # by the names start() reads them under: their order comes from INPUTS alone
            "preset": preset,
            "erase": erase,
            "keep": keep,
            "method": method,
            "layers": layers,
            "steps": steps,
            "lr": lr,
            "rank": rank,
            "seed": seed,
            "name": name,
            "overwrite": overwrite,
            "preview": preview,
            "preview_size": preview_size,
            "settings": settings,
            "resume": resume,
            "robust": robust,
        }
        submit.click(
            fn=start,
            _js="concept_erasure_submit",
            inputs=[task_id, *(widgets[key] for key in INPUTS)],
            outputs=[grid, loss, audit, status],
            show_progress=False,  # the WebUI's own progress bar and live preview show it, as for txt2img
        )
        interrupt.click(fn=lambda: shared.state.interrupt(), inputs=[], outputs=[])
        check_button.click(fn=check, inputs=[task_id, check_name, check_strength], outputs=[check_result])
        attack_button.click(
            fn=attack,
            inputs=[task_id, attack_name, attack_concept, attack_kinds, attack_budget],
            outputs=[attack_result],
        )
        method.change(fn=method_changed, inputs=[method], outputs=[steps, lr, rank])
        preset.change(fn=preset_chosen, inputs=[preset], outputs=[erase, keep])
    return blocks


def on_ui_tabs() -> list[tuple[gr.Blocks, str, str]]:
    return [(build(), TITLE, ELEM)]
