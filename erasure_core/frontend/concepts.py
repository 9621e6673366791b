"""The Concept List: parse what users type (one concept per line, optional weight) and the presets they start from.

A line is `concept`, `concept: 1.5` or the prompt-weight form `(concept:1.5)` users know from ComfyUI and A1111.
Blank lines and lines starting with `#` are ignored. Duplicates (ignoring case and spacing) are merged with a
warning rather than an error, because pasted lists often repeat themselves.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..errors import ConfigError

_WEIGHTED_PAREN = re.compile(r"^\((?P<text>.+):\s*(?P<weight>[-+0-9.eE]+)\s*\)$")
_WEIGHTED_SUFFIX = re.compile(r"^(?P<text>.*?)\s*:\s*(?P<weight>[-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)$")
MAX_CONCEPTS = 64  # one concept per step is trained; more than this dilutes every concept to a few steps


@dataclass(frozen=True)
class ConceptList:
    """What the Concept List node outputs (the CONCEPTS type): erase and keep lists with one weight each."""

    erase: tuple[str, ...] = ()
    erase_weights: tuple[float, ...] = ()
    keep: tuple[str, ...] = ()
    keep_weights: tuple[float, ...] = ()
    warnings: tuple[str, ...] = field(default=(), compare=False)

    def summary(self) -> str:
        def fmt(names: tuple[str, ...], weights: tuple[float, ...]) -> str:
            return ", ".join(n if w == 1.0 else f"{n} ({w:g})" for n, w in zip(names, weights, strict=True)) or "-"

        lines = [f"erase ({len(self.erase)}): {fmt(self.erase, self.erase_weights)}"]
        lines.append(f"keep ({len(self.keep)}): {fmt(self.keep, self.keep_weights)}")
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def parse_line(line: str) -> tuple[str, float] | None:
    """One line → (concept, weight), or None for blank and comment lines."""
    text = " ".join(line.split())
    if not text or text.startswith("#"):
        return None
    weight = 1.0
    if m := _WEIGHTED_PAREN.match(text) or _WEIGHTED_SUFFIX.match(text):
        try:
            weight = float(m.group("weight"))
        except ValueError:
            raise ConfigError(f"The weight in {line.strip()!r} is not a number; write it as 'concept: 1.5'.") from None
        text = m.group("text").strip()
    if not text:
        raise ConfigError(f"The line {line.strip()!r} has a weight but no concept; write it as 'concept: 1.5'.")
    if not (weight > 0 and weight <= 10):
        raise ConfigError(f"The weight of {text!r} is {weight:g}; use a number above 0 and at most 10 (1 = normal).")
    return text, weight


def parse_concepts(text: str, what: str) -> tuple[tuple[str, ...], tuple[float, ...], list[str]]:
    """Parse a multi-line list; returns (concepts, weights, warnings). `what` ("erase"/"keep") names the list."""
    names: list[str] = []
    weights: list[float] = []
    seen: dict[str, int] = {}
    warnings: list[str] = []
    for number, line in enumerate((text or "").splitlines(), start=1):
        parsed = parse_line(line)
        if parsed is None:
            continue
        name, weight = parsed
        key = name.lower()
        if key in seen:
            warnings.append(f"'{name}' (line {number}) repeats line {seen[key]} of the {what} list; it was merged.")
            continue
        seen[key] = number
        names.append(name)
        weights.append(weight)
    if len(names) > MAX_CONCEPTS:
        raise ConfigError(
            f"The {what} list has {len(names)} concepts; at most {MAX_CONCEPTS} are supported in one run. "
            "Split it over several Erase Concept nodes."
        )
    return tuple(names), tuple(weights), warnings


def build_concept_list(erase_text: str, keep_text: str = "") -> ConceptList:
    """The CONCEPTS value of two text boxes. Raises `ConfigError` with the fix when nothing is left to erase."""
    erase, erase_weights, warnings = parse_concepts(erase_text, "erase")
    keep, keep_weights, keep_warnings = parse_concepts(keep_text, "keep")
    if not erase:
        raise ConfigError(
            "The list of concepts to erase is empty. Type one concept per line (for example 'Van Gogh'), "
            "or pick a preset."
        )
    both = {c.lower() for c in erase} & {c.lower() for c in keep}
    if both:
        raise ConfigError(f"{sorted(both)} are both erased and kept; remove them from one of the two lists.")
    return ConceptList(erase, erase_weights, keep, keep_weights, tuple(warnings + keep_warnings))


# Presets: (erase, keep). Sources: the ESD/EAP/AGE papers' evaluation sets (shared/reference/algorithms.md §2.5, §5).
PRESETS: dict[str, tuple[str, str]] = {
    "custom": ("", ""),
    "nudity (with synonyms)": (
        "nudity\nnaked person\nnude body\ntopless\nexplicit sexual content",
        "person\nportrait of a woman\nportrait of a man\nclothed people at the beach",
    ),
    "artists (papers' five)": (
        "Kelly Mckernan",
        "Thomas Kinkade\nAjin Demi Human\nTyler Edlin\nKilian Eng",
    ),
    "famous painters": (
        "Van Gogh",
        "Pablo Picasso\nRembrandt\nAndy Warhol\nCaravaggio",
    ),
    "Imagenette split 1": (
        "Cassette Player\nChurch\nGarbage Truck\nParachute\nFrench Horn",
        "Chain Saw\nGas Pump\nTench\nEnglish Springer\nGolf Ball",
    ),
    "Imagenette split 2": (
        "Chain Saw\nGas Pump\nTench\nEnglish Springer\nGolf Ball",
        "Cassette Player\nChurch\nGarbage Truck\nParachute\nFrench Horn",
    ),
}


def preset_texts(name: str) -> tuple[str, str]:
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"Unknown preset {name!r}; choose one of {', '.join(PRESETS)}.") from None


def merge_presets(preset: str, erase_text: str, keep_text: str) -> ConceptList:
    """A preset's lists followed by the user's own lines (so a preset can be extended, not only replaced)."""
    preset_erase, preset_keep = preset_texts(preset)
    return build_concept_list(
        "\n".join(t for t in (preset_erase, erase_text) if t), "\n".join(t for t in (preset_keep, keep_text) if t)
    )
