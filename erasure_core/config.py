"""Run configurations: one frozen dataclass per method on a shared base.

Numeric and choice fields default to `None`, meaning "the method's default", and are filled from
`defaults.DEFAULTS[method]` in `__post_init__`; so the table is the only place a default is written, and every
front end (CLI, ComfyUI, A1111) reads it through `method_defaults()` or the resolved config.
Everything cheap is checked here, before any weights load.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .defaults import (
    AGE_ALTERNATING_FRESH_STEPS,
    AGE_JOINT_FRESH_STEPS,
    AGE_JOINT_REFRESHES,
    DEFAULTS,
    POOL_AUTO_LAYERS,
    POOL_AUTO_MIN_REUSE,
    POOL_AUTO_REFRESHES,
    POOL_DDIM_STEPS,
    REFERENCE_DDIM_STEPS,
    UCE_TEMPLATES,
)
from .errors import ConfigError
from .layers import LAYER_SET_HELP, LAYER_SETS

LOSS_SPACES = ("eps", "x0")
UCE_TOKENS = ("subject", "tail", "all")  # see erasure_core/methods/uce.py
POOL_MODELS = ("current", "original")
AUTO = "auto"


def int_or_auto(text: str) -> int | str:
    """Parse a command-line value that is a whole number or 'auto'."""
    return AUTO if text.strip().lower() == AUTO else int(text)


def _opt(help: str, **meta: Any) -> Any:
    return field(default=None, metadata={"help": help, **meta})


def _expected_kind(annotation: str, value: Any) -> str | None:
    """What a scalar field's value should be when `value` is not that (None when it fits or is not a scalar).

    Settings arrive as text from every front end (advanced boxes, JSON, the command line), so a word where a number
    belongs is refused here instead of failing mid-run.
    """
    kinds = {k.strip() for k in annotation.split("|")} - {"None"}
    if value is None or (value == AUTO and "str" in kinds) or not kinds <= {"int", "float", "bool", "str"}:
        return None
    if "bool" in kinds and isinstance(value, bool):
        return None
    if kinds & {"int", "float"} and isinstance(value, (int, float)) and not isinstance(value, bool):
        return None if "float" in kinds or isinstance(value, int) else "a whole number"
    if "str" in kinds and isinstance(value, str):
        return None
    order = ("bool", "int", "float", "str")
    names = {"bool": "true or false", "int": "a whole number", "float": "a number", "str": "a text"}
    return " or ".join(names[k] for k in order if k in kinds and not (k == "int" and "float" in kinds))


def normalize_concepts(values: Iterable[str] | str | None, what: str) -> tuple[str, ...]:
    """Strip, drop case-insensitive duplicates and reject empty entries ("erase" / "keep" name the list)."""
    if values is None:
        return ()
    if isinstance(values, str):
        values = [values]
    out: list[str] = []
    seen: set[str] = set()
    for raw in values:
        if not isinstance(raw, str):
            raise ConfigError(f"Concepts to {what} must be strings, got {type(raw).__name__} {raw!r}.")
        text = " ".join(raw.split())
        if not text:
            raise ConfigError(f"A concept to {what} is empty or only whitespace; remove it or type the concept.")
        if text.lower() not in seen:
            seen.add(text.lower())
            out.append(text)
    return tuple(out)


def _concept_weights(weights: Iterable[float], concepts: tuple[str, ...], what: str) -> tuple[float, ...]:
    """One finite positive weight per concept; an empty list means 1.0 for each."""
    weights = tuple(float(w) for w in weights)
    if not weights:
        return (1.0,) * len(concepts)
    if len(weights) != len(concepts):
        raise ConfigError(
            f"{len(weights)} weight(s) were given for {len(concepts)} concept(s) to {what} ({', '.join(concepts)}); "
            "give one weight per concept (duplicates are merged), or none."
        )
    for concept, w in zip(concepts, weights, strict=True):
        if not math.isfinite(w) or w <= 0:
            raise ConfigError(f"The weight of {concept!r} is {w}; weights must be positive numbers such as 0.5 or 2.")
    return weights


@dataclass(frozen=True)
class EraseConfig:
    """Settings shared by every method. Use a method's subclass (`EsdConfig`, ...), not this base."""

    method: ClassVar[str] = ""
    # A closed-form edit (UCE): one solve instead of training steps, so no steps, learning rate, LoRA rank or resume.
    closed_form: ClassVar[bool] = False

    erase: tuple[str, ...] = field(default=(), metadata={"help": "Concepts to erase (one prompt each)."})
    keep: tuple[str, ...] = field(default=(), metadata={"help": "Concepts to keep unchanged."})
    erase_weights: tuple[float, ...] = field(
        default=(),
        metadata={"help": "Strength per erased concept, multiplying its guidance eta (empty = 1 for every concept)."},
    )
    keep_weights: tuple[float, ...] = field(
        default=(), metadata={"help": "Weight per kept concept, multiplying its preservation loss (empty = 1 each)."}
    )
    layers: str | None = _opt(
        "Layer set the LoRA trains: " + "; ".join(f"{k} = {v}" for k, v in LAYER_SET_HELP.items()), choices=LAYER_SETS
    )
    rank: int | None = _opt("LoRA rank.", min=1, max=1024)
    alpha: float | None = _opt("LoRA alpha (scale = alpha / rank).", min=0.0)
    lr: float | None = _opt("Learning rate of the LoRA weights.", min=0.0, max=1.0)
    steps: int | None = _opt(
        "Parameter update steps per erased concept (the concepts take turns, so a run makes steps x concepts); "
        "with `until_erased` the budget, most runs stop sooner.",
        min=1,
        max=1_000_000,
    )
    seed: int | None = _opt("Random seed; the same seed and inputs give the same LoRA.", min=0)
    sample_guidance: float | None = _opt(
        "Guidance scale of the partial sampling that makes training latents.", min=0.0
    )
    ddim_steps: int | str | None = _opt(
        "DDIM steps of the sampling schedule the training latents and timesteps come from. 'auto' = "
        f"{POOL_DDIM_STEPS} where the latent pool serves the latents, else the reference's {REFERENCE_DDIM_STEPS}.",
        min=2,
        max=1000,
        parse=int_or_auto,
    )
    reference_timestep_offset: bool | None = _opt(
        "Reproduce the reference code's latent/timestep mismatch (latent about two DDIM steps less noisy)."
    )
    batch_size: int | None = _opt("Training latents per step, each at its own drawn timestep.", min=1, max=64)
    pool_trajectories: int | None = _opt(
        "Stored sampling trajectories per erased concept that training latents are drawn from.", min=1, max=256
    )
    pool_refreshes: int | str | None = _opt(
        "Times per run the stored trajectories are re-sampled from the current model (0 = sample fresh latents at "
        "every step, as the reference code does; about 25x the sampling cost). 'auto' = "
        f"{POOL_AUTO_REFRESHES} for the {' / '.join(POOL_AUTO_LAYERS)} layer sets where each trajectory then serves "
        f"at least {POOL_AUTO_MIN_REUSE} training latents (one concept in 100 steps, or up to 7 in the default "
        f"500), else 0; AGE's joint step: {AGE_JOINT_REFRESHES}.",
        min=0,
        parse=int_or_auto,
    )
    pool_fresh_steps: int | str | None = _opt(
        "Latents whose partial sampling takes at most this many DDIM steps (the noisiest ones) are sampled fresh "
        f"instead of taken from the pool (0 = none). 'auto' = 0, except AGE: {AGE_JOINT_FRESH_STEPS} with its joint "
        f"step, else {AGE_ALTERNATING_FRESH_STEPS}.",
        min=0,
        parse=int_or_auto,
    )
    pool_model: str | None = _opt(
        "Model that samples the pool's trajectories: 'current' (the edited model, as the reference's sampling) or "
        "'original' (the unedited model, whose predictions along them then serve as the targets for free).",
        choices=POOL_MODELS,
    )
    cuda_graphs: bool | None = _opt(
        "On CUDA, replay the no-gradient UNet calls (frozen model, latent sampling) from CUDA graphs (backends that "
        "support it)."
    )
    negative_guidance: float | None = _opt("Strength eta of the negative guidance the edit distils.", min=0.0)
    anchor: str | None = _opt("Prompt the erased concept is steered to (ESD; empty = unconditional).")
    loss_space: str | None = _opt(
        "Compare noise predictions ('eps', ESD) or x0-predictions ('x0', EAP/AGE).", choices=LOSS_SPACES
    )
    keep_weight: float | None = _opt("Weight of the preservation loss of the concepts to keep.", min=0.0)
    guard_neighbours: int | None = _opt(
        "Also keep this many of each erased concept's nearest words by the text encoder, leaving out those the model "
        "draws as the concept itself (0 = off).",
        min=0,
    )
    robust: bool | None = _opt(
        "Robust mode (ESD, EAP): train against the recovery attack as well, erasing a soft prompt kept adversarial to "
        "the edit as it trains (AdvUnlearn's idea; erasure_core/robust.py). It trains the whole step budget."
    )
    robust_tokens: int | None = _opt("Robust mode: context positions of the adversarial soft prompt.", min=1)
    robust_lr: float | None = _opt(
        "Robust mode: the soft prompt's Adam rate, relative to the context's scale.", min=0.0
    )
    robust_weight: float | None = _opt("Robust mode: weight of the adversarial prompt's erasure term.", min=0.0)
    resolution: int | None = field(
        default=None, metadata={"help": "Training resolution in pixels (default: the model's native size).", "min": 8}
    )
    until_erased: bool | None = _opt(
        "Stop once every erased concept is erased (its measured erasure reaches `erased_at`); `steps` is then the "
        "budget. Off: train exactly `steps` steps."
    )
    erased_at: float | None = _opt(
        "Erasure score (0..1, the audit's) at which a concept counts as erased and training stops for it.",
        min=0.0,
        max=1.0,
    )
    check_every: int | None = _opt("Steps between two measurements of every concept's erasure.", min=1)
    check_samples: int | None = _opt("Fixed latents per concept the erasure is measured on.", min=1, max=64)
    adam_per_concept: bool | None = _opt(
        "One Adam state per erased concept over the shared LoRA (off: one for all, as the reference)."
    )
    audit_samples: int | None = _opt("Latents per probe prompt in the audit (0 skips the audit).", min=0, max=64)
    audit_ddim_steps: int | None = _opt("DDIM steps used to make the audit's latents.", min=2, max=1000)

    def __post_init__(self) -> None:
        if not self.method:
            raise ConfigError("Use a method's config (EsdConfig, EapConfig, AgeConfig or UceConfig), not EraseConfig.")
        object.__setattr__(self, "erase", normalize_concepts(self.erase, "erase"))
        object.__setattr__(self, "keep", normalize_concepts(self.keep, "keep"))
        for key, value in DEFAULTS[self.method].items():
            if getattr(self, key) is None:
                object.__setattr__(self, key, value)
        object.__setattr__(self, "erase_weights", _concept_weights(self.erase_weights, self.erase, "erase"))
        object.__setattr__(self, "keep_weights", _concept_weights(self.keep_weights, self.keep, "keep"))
        self._check()

    def _check(self) -> None:
        if not self.erase:
            raise ConfigError("No concept to erase was given; name at least one concept to erase.")
        if both := {c.lower() for c in self.erase} & {c.lower() for c in self.keep}:
            raise ConfigError(f"{sorted(both)} are both erased and kept; remove them from one of the two lists.")
        if self.robust and self.method in ("age", "uce"):
            raise ConfigError(
                f"The robust mode is built for ESD and EAP; {self.method.upper()} has none yet. Use --method esd or eap, "
                "or drop --robust."
            )
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            meta = f.metadata
            if "choices" in meta and value not in meta["choices"]:
                raise ConfigError(f"`{f.name}` is {value!r}; choose one of {', '.join(meta['choices'])}.")
            if meta.get("parse") is int_or_auto and not (value == AUTO or type(value) is int):
                raise ConfigError(f"`{f.name}` is {value!r}; give a whole number or 'auto'.")
            if (kind := _expected_kind(f.type, value)) is not None:
                raise ConfigError(f"`{f.name}` is {value!r}; give {kind}.")
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"`{f.name}` must be a finite number, got {value}.")
            if "min" in meta and value < meta["min"]:
                raise ConfigError(f"`{f.name}` is {value}; it must be at least {meta['min']}.")
            if "max" in meta and value > meta["max"]:
                raise ConfigError(f"`{f.name}` is {value}; it must be at most {meta['max']}.")

    @property
    def total_steps(self) -> int:
        """Training steps of the whole run at most: `steps` for each erased concept (UCE: one closed-form solve)."""
        return 1 if self.closed_form else self.steps * len(self.erase)

    def resolved_pool_refreshes(self) -> int:
        """The latent-pool refreshes this run makes: `pool_refreshes`, with 'auto' resolved (0 = no pool)."""
        if self.pool_refreshes != AUTO:
            return self.pool_refreshes
        return POOL_AUTO_REFRESHES if self._pool_pays(POOL_AUTO_REFRESHES) else 0

    def resolved_ddim_steps(self) -> int:
        """The sampling schedule's DDIM steps: `ddim_steps`, with 'auto' resolved from the pool's choice."""
        if self.ddim_steps != AUTO:
            return self.ddim_steps
        return POOL_DDIM_STEPS if self.resolved_pool_refreshes() > 0 else REFERENCE_DDIM_STEPS

    def resolved_pool_fresh_steps(self) -> int:
        """`pool_fresh_steps`, with 'auto' resolved: ESD and EAP take every latent from the pool (as measured)."""
        return 0 if self.pool_fresh_steps == AUTO else self.pool_fresh_steps

    def resolved(self) -> EraseConfig:
        """This config with every 'auto' replaced by what it resolves to: a shorter run made from it (a timed part,
        a resumed run) then trains as this one does, whatever its own step count would resolve to."""
        return self.replace(
            pool_refreshes=self.resolved_pool_refreshes(),
            ddim_steps=self.resolved_ddim_steps(),
            pool_fresh_steps=self.resolved_pool_fresh_steps(),
        )

    def _pool_pays(self, refreshes: int) -> bool:
        """Whether each stored trajectory serves at least POOL_AUTO_MIN_REUSE training latents (`auto`'s rule)."""
        reuse = self.total_steps * self.batch_size / (len(self.erase) * self.pool_trajectories * refreshes)
        return self.layers in POOL_AUTO_LAYERS and reuse >= POOL_AUTO_MIN_REUSE

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able settings, `method` included (for reports and LoRA metadata)."""
        data = {"method": self.method}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            data[f.name] = list(value) if isinstance(value, tuple) else value
        return data

    def replace(self, **changes: Any) -> EraseConfig:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class _SearchFields(EraseConfig):
    """Fields of the vocabulary search shared by EAP (adversarial concept) and AGE (target concept)."""

    vocabulary: tuple[str, ...] | None = field(
        default=None, metadata={"help": "Candidate words (default: whole-word tokens of the model's tokenizer)."}
    )
    vocabulary_limit: int | None = _opt("Use at most this many (most frequent) tokenizer words.", min=1)
    exclude_erased_words: bool | None = _opt(
        "Drop every erased concept and its inflections (cars, car's) from every concept's candidate set."
    )
    k_closest: int | None = _opt("Nearest vocabulary words considered per erased concept.", min=1)
    num_centers: int | None = _opt("Candidates kept after 1-D k-means over the distances.", min=1)
    gumbel_temperature: float | None = _opt("Gumbel-softmax temperature.", min=1e-6)
    gumbel_lr: float | None = _opt("Adam learning rate of the candidate logits.", min=0.0)
    gumbel_hard: bool | None = _opt("Straight-through one-hot sample (else a soft top-k mixture).")
    gumbel_top_k: int | None = _opt("Candidates in the soft mixture when gumbel_hard is off.", min=1)
    preserve_weight: float | None = _opt("Weight of the preservation term of the found concept.", min=0.0)
    pool_candidates: int | None = _opt(
        "Candidate words the search draws from in each latent-pool period, re-drawn from its current distribution "
        "at every refresh (each drawn word costs one stored trajectory); 0 = search over every candidate and take "
        "the found concept's latents from the erased concept's trajectories.",
        min=0,
    )

    def __post_init__(self) -> None:
        if self.vocabulary is not None:
            words = normalize_concepts(self.vocabulary, "use as vocabulary")
            if not words:
                raise ConfigError("The vocabulary is empty; give some words or leave it unset to use the tokenizer's.")
            object.__setattr__(self, "vocabulary", words)
        super().__post_init__()


@dataclass(frozen=True)
class EsdConfig(EraseConfig):
    """ESD: distil negative guidance away from the erased concept (Gandikota et al. 2023)."""

    method: ClassVar[str] = "esd"


@dataclass(frozen=True)
class EapConfig(_SearchFields):
    """EAP: ESD plus preservation of the concept the edit currently hurts most (Bui et al. 2024)."""

    method: ClassVar[str] = "eap"


@dataclass(frozen=True)
class AgeConfig(_SearchFields):
    """AGE: steer the erased concept to a learned mixture of nearby concepts (Bui et al. 2025)."""

    method: ClassVar[str] = "age"

    detached_erasure_term: bool | None = _opt(
        "Reproduce the reference code's detached erasure term in the target search (a bug; for comparison)."
    )
    pool_search_only: bool | None = _opt(
        "The alternating schedule with the latent pool on: only the target search's steps take pooled latents; the "
        "parameter steps sample the erased concept's latent fresh and preserve the target on it."
    )
    joint_step: bool | str | None = _opt(
        "Take the parameter step and the target search's logit step from one pooled latent and one backward pass, "
        "before either update, instead of alternating them on latents of their own as the reference does. 'auto' "
        f"(default) = where each stored trajectory serves at least {POOL_AUTO_MIN_REUSE} training latents at "
        f"{AGE_JOINT_REFRESHES} refreshes (one concept in 256 steps or more), as measured."
    )

    def _check(self) -> None:
        super()._check()
        if self.joint_step != AUTO and not isinstance(self.joint_step, bool):
            raise ConfigError(f"`joint_step` is {self.joint_step!r}; give true, false or 'auto'.")

    def resolved_joint_step(self) -> bool:
        """Whether the run takes AGE's joint step (`joint_step`, with 'auto' resolved)."""
        if self.joint_step != AUTO:
            return self.joint_step
        return self.pool_refreshes != 0 and self._pool_pays(AGE_JOINT_REFRESHES)

    def resolved(self) -> AgeConfig:
        """The base's, with the joint step's 'auto' resolved too."""
        return super().resolved().replace(joint_step=self.resolved_joint_step())

    def resolved_pool_fresh_steps(self) -> int:
        """`auto`: fewer fresh noisiest latents for the joint step than for the alternating schedule, as measured."""
        if self.pool_fresh_steps != AUTO:
            return self.pool_fresh_steps
        return AGE_JOINT_FRESH_STEPS if self.resolved_joint_step() else AGE_ALTERNATING_FRESH_STEPS

    def resolved_pool_refreshes(self) -> int:
        """`auto`: the base rule, re-sampled AGE_JOINT_REFRESHES times instead where the joint step uses the pool."""
        refreshes = super().resolved_pool_refreshes()
        if self.pool_refreshes == AUTO and refreshes and self.resolved_joint_step():
            return AGE_JOINT_REFRESHES
        return refreshes


@dataclass(frozen=True)
class UceConfig(EraseConfig):
    """UCE: closed-form edit of the cross-attention key/value projections (Gandikota et al. 2024)."""

    method: ClassVar[str] = "uce"
    closed_form: ClassVar[bool] = True

    uce_lambda: float | None = _opt("Regulariser lambda that keeps the weights near the original.", min=0.0)
    erase_scale: float | None = _opt("Weight of the erased concepts in the least-squares edit.", min=0.0)
    preserve_scale: float | None = _opt("Weight of the kept concepts in the least-squares edit.", min=0.0)
    guide: str | None = _opt("Prompt whose projections the erased concept receives (empty = unconditional).")
    tokens: str | None = _opt(
        "Token embeddings edited and kept: 'subject' = each prompt's last subject token; 'tail' = it and every "
        "position after it (end and padding tokens); 'all' = every position (bidirectional text encoders).",
        choices=UCE_TOKENS,
    )
    templates: int | None = _opt(
        "Also edit each concept inside this many prompt templates ('a photo of a {}', ...), mapped onto the guide in "
        "the same template (UCE's prompt expansion; 0 = the bare concept only).",
        min=0,
        max=len(UCE_TEMPLATES),
    )
    energy: float | None = _opt(
        "Fraction of the edit's energy the exported LoRA keeps (truncated SVD).", min=0.0, max=1.0
    )
    max_rank: int | None = _opt("Largest LoRA rank per layer in the export.", min=1)

    def _check(self) -> None:
        super()._check()
        if self.layers != "xattn-kv":
            raise ConfigError(
                f"UCE edits only cross-attention keys and values; set layers to 'xattn-kv', not {self.layers!r}."
            )


CONFIG_CLASSES: dict[str, type[EraseConfig]] = {
    cls.method: cls for cls in (EsdConfig, EapConfig, AgeConfig, UceConfig)
}


def config_class(method: str) -> type[EraseConfig]:
    try:
        return CONFIG_CLASSES[method]
    except KeyError:
        raise ConfigError(f"Unknown method {method!r}; choose one of {', '.join(CONFIG_CLASSES)}.") from None


def is_closed_form(method: str) -> bool:
    """Whether `method` edits in closed form (see `EraseConfig.closed_form`)."""
    return config_class(method).closed_form


def method_defaults(method: str) -> dict[str, Any]:
    """The resolved default of every field of `method`'s config (for CLI help, node widgets, A1111 sliders)."""
    return dict(DEFAULTS[config_class(method).method])


def setting_names(method: str) -> set[str]:
    """The names `make_config(method, ...)` accepts."""
    return {f.name for f in dataclasses.fields(config_class(method))}


def make_config(method: str, **settings: Any) -> EraseConfig:
    """Build the config of `method`; settings given as None keep their default. Unknown settings raise."""
    cls = config_class(method)
    names = setting_names(method)
    if unknown := sorted(set(settings) - names):
        raise ConfigError(f"Unknown setting(s) {unknown} for method {method!r}; known: {sorted(names)}.")
    return cls(**{k: v for k, v in settings.items() if v is not None})


def config_from_dict(data: dict[str, Any]) -> EraseConfig:
    """Inverse of `EraseConfig.to_dict`."""
    data = dict(data)
    method = data.pop("method", None)
    if method is None:
        raise ConfigError("The settings carry no 'method'.")
    for key in ("erase", "keep", "vocabulary", "erase_weights", "keep_weights"):
        if isinstance(data.get(key), list):
            data[key] = tuple(data[key])
    return make_config(method, **data)
