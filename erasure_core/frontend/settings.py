"""The Erase Concept form (ComfyUI node, A1111 tab, HTTP route) → an engine config. Host-free, so CI checks it."""

from __future__ import annotations

import ast
from collections.abc import Mapping
from typing import Any

from ..attack import AttackConfig, AttackReport
from ..config import CONFIG_CLASSES, EraseConfig, config_from_dict, is_closed_form, make_config
from ..defaults import DEFAULTS
from ..errors import ConfigError
from ..layers import LAYER_SETS
from .concepts import ConceptList, build_concept_list, parse_concepts
from .lora_info import erasure_info

METHODS = ("eap", "age", "esd", "uce")  # EAP first: the node's default
LAYER_CHOICES = ("method default", *LAYER_SETS)
DEFAULT_METHOD = "eap"
WIDGET_DEFAULTS = {key: DEFAULTS[DEFAULT_METHOD][key] for key in ("steps", "lr", "rank", "seed")}
MAX_STEPS = 20000
# What the form's training widgets mean, and that UCE (a closed-form edit) does not use them.
NOT_UCE = "UCE is a closed-form edit and does not use it."
STEPS_HELP = (
    "Training steps per erased concept: the budget; with until_erased (the default) most runs stop sooner. "
    "ESD, EAP, AGE. " + NOT_UCE
)
UCE_RANK = "UCE does not use it: its rank is what the edit needs (max_rank and energy in advanced)."
UCE_LAYERS = "xattn-kv"  # the only layers UCE edits
TRAINING_WIDGETS = ("steps", "lr", "rank")  # the form's settings a closed-form method does not use


def ignored_widgets_note(method: str, layers: str = "method default") -> str:
    """One line saying which of the form's settings a method does not use ("" when it uses them all)."""
    if not is_closed_form(method):
        return ""
    note = "UCE is a closed-form edit: steps, learning_rate and rank do not apply (its rank: max_rank and energy)"
    if layers not in ("method default", UCE_LAYERS):
        note += f"; it edits only {UCE_LAYERS}, not {layers}"
    return note + "."


def parse_advanced(text: str) -> dict[str, Any]:
    """`name = value` lines (Python literals: 2, 0.5, "a dog", true/false) → settings; `#` starts a comment."""
    settings: dict[str, Any] = {}
    for number, raw in enumerate((text or "").splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, value = line.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not name.isidentifier():
            raise ConfigError(
                f"Advanced setting on line {number} ({raw.strip()!r}) must look like 'negative_guidance = 2'."
            )
        lowered = value.lower()
        if lowered in ("true", "false"):
            settings[name] = lowered == "true"
            continue
        try:
            settings[name] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            settings[name] = value  # a bare word, e.g. anchor = painting
    return settings


def build_config(
    concepts: ConceptList | None,
    erase_text: str,
    keep_text: str,
    method: str,
    layers: str,
    steps: int,
    lr: float,
    rank: int,
    seed: int,
    advanced: str | Mapping[str, Any] = "",
    robust: bool = False,
) -> EraseConfig:
    """Combine a CONCEPTS input (if connected) with the form's own text boxes, and the settings.

    `advanced` holds every other engine setting: `name = value` lines (a text box) or a mapping (JSON). `robust` is
    the form's switch for the robust mode (`robust.py`).
    """
    if method not in CONFIG_CLASSES:
        raise ConfigError(f"Unknown method {method!r}; choose one of {', '.join(METHODS)}.")
    if not 1 <= int(steps) <= MAX_STEPS:
        raise ConfigError(f"steps is {steps}; choose between 1 and {MAX_STEPS}.")
    if concepts is not None and (erase_text or "").strip() == "" and (keep_text or "").strip() == "":
        merged = concepts
    else:
        base_erase = "\n".join(_lines(concepts.erase, concepts.erase_weights)) if concepts else ""
        base_keep = "\n".join(_lines(concepts.keep, concepts.keep_weights)) if concepts else ""
        merged = build_concept_list(
            "\n".join(filter(None, (base_erase, erase_text))), "\n".join(filter(None, (base_keep, keep_text)))
        )
    settings: dict[str, Any] = {"steps": int(steps), "lr": float(lr), "rank": int(rank), "seed": int(seed)}
    if layers != "method default":
        settings["layers"] = layers
    if is_closed_form(method):  # no steps, lr or seed; its rank comes from the SVD
        settings = {"seed": int(seed)}
    if robust:
        settings["robust"] = True
    settings.update(parse_advanced(advanced) if isinstance(advanced, str) else dict(advanced))
    for fixed in ("erase", "keep", "erase_weights", "keep_weights"):
        if fixed in settings:
            raise ConfigError(f"'{fixed}' cannot be set in the advanced box; use the concept lists.")
    if not is_closed_form(method) and "alpha" not in settings:
        settings["alpha"] = float(settings["rank"])  # keep the LoRA scale at 1 whatever the rank
    return make_config(
        method,
        erase=merged.erase,
        keep=merged.keep,
        erase_weights=merged.erase_weights,
        keep_weights=merged.keep_weights,
        **settings,
    )


def _lines(names: tuple[str, ...], weights: tuple[float, ...]) -> list[str]:
    return [n if w == 1.0 else f"{n}: {w:g}" for n, w in zip(names, weights, strict=True)]


def audit_config(metadata: Mapping[str, str], erase_text: str, samples: int, seed: int) -> EraseConfig:
    """What the Erasure Audit measures: the settings the LoRA was trained with (our metadata), else the concepts
    typed in `erase_text`, one per line as in every other concept box."""
    settings = erasure_info(metadata).get("config")
    if settings:
        return config_from_dict(settings).replace(audit_samples=samples, seed=seed)
    names, weights, _ = parse_concepts(erase_text or "", "erase")
    if not names:
        raise ConfigError("This LoRA carries no erasure metadata; type the erased concepts in 'erase', one per line.")
    return make_config("esd", erase=names, erase_weights=weights, audit_samples=samples, seed=seed)


def attack_config(
    metadata: Mapping[str, str],
    concept: str,
    attacks: tuple[str, ...],
    budget_s: float,
    seed: int,
    samples: int = AttackConfig.samples,
    held_out: int = AttackConfig.held_out,
) -> AttackConfig:
    """What the attack audit attacks, checked: `concept` if typed, else the one concept the LoRA erased (our
    metadata)."""
    erased = erasure_info(metadata).get("erased") or []
    name = concept.strip() or (erased[0] if len(erased) == 1 else "")
    if not name:
        named = ", ".join(erased) if erased else "no concept in its metadata"
        raise ConfigError(f"Name the erased concept to bring back (this LoRA erased {named}).")
    config = AttackConfig(name, attacks, budget_s=float(budget_s), samples=samples, held_out=held_out, seed=seed)
    config.check()
    return config


def attack_text(report: AttackReport) -> str:
    """The attack audit's table and what it means, for the CLI, a node's text and the tab."""
    held_out = len(report.plain_recovery)
    return (
        f"{report.table()}\n{100 * report.success_rate:.0f}% of {held_out} held-out latents of '{report.concept}' "
        f"were brought back by at least one attack, in {report.seconds:.0f} s (judged by the {report.measure}). "
        "A low rate is not a proof that no attack brings the concept back."
        + (f"\n{report.note}" if report.note else "")
    )
