"""What an erasure LoRA's header says, as text for the nodes (host-free; the engine decodes the fields)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..lora.export import LoraFile
from ..monitor import format_erasure
from ..preview import preview_rows


def erasure_info(metadata: Mapping[str, str]) -> dict[str, Any]:
    """Our `erasure_*` header fields decoded (method, erased, kept, found, audit, losses, ...); {} for other LoRAs."""
    return LoraFile({}, dict(metadata)).info()


def describe(metadata: Mapping[str, str]) -> str:
    """Erased, kept and found concepts and the audit table, for a node's text output."""
    info = erasure_info(metadata)
    if not info:
        return "not made by concept erasure (no erasure metadata)"
    lines = [
        f"method: {info.get('method', '?')}",
        f"erased: {', '.join(info.get('erased') or []) or '-'}",
        f"kept: {', '.join(info.get('kept') or []) or '-'}",
    ]
    if info.get("steps"):
        lines.append(f"steps: {info['steps']}")
    if info.get("resumed_from"):
        lines.append(f"resumed from: {info['resumed_from']}")
    if not_erased := info.get("not_erased"):
        lines.append(
            "NOT erased when the step budget ran out: "
            + format_erasure(not_erased)
            + " (raise steps or the learning rate, or resume from this LoRA)"
        )
    for concept, words in (info.get("guarded") or {}).items():
        lines.append(f"kept as neighbours of '{concept}': {', '.join(words) or '-'}")
    for concept, words in (info.get("neighbours") or {}).items():
        lines.append(f"neighbours of '{concept}' (audited): {', '.join(words) or '-'}")
    for concept, words in (info.get("found") or {}).items():
        lines.append(f"words the concept search settled on for '{concept}': {', '.join(words[:8])}")
    rows = info.get("audit") or []
    if rows:
        lines += ["", f"{'prompt':<28} {'role':<9} {'erasure':>7} {'drift':>6}"]
        for r in rows:
            erasure = _number(r["erasure"]) if "erasure" in r else "-"
            lines.append(f"{r['prompt'][:28]:<28} {r['role']:<9} {erasure:>7} {_number(r.get('drift')):>6}")
    return "\n".join(lines)


def _number(value: float | None) -> str:
    """An audit value as stored: null where the model's predictions were not finite."""
    return "n/a" if value is None else f"{value:.2f}"


def recorded_losses(metadata: Mapping[str, str]) -> list[float]:
    """The loss curve stored in the header (for LOSS_MAP when a LoRA comes from the cache)."""
    values = erasure_info(metadata).get("losses") or []
    return [float(v) for v in values] if isinstance(values, list) else []


def preview_rows_of(metadata: Mapping[str, str]) -> list[tuple[str, str]]:
    """A LoRA's erased and kept concepts and the neighbours its audit showed, as (role, prompt) rows: the default
    prompts of the Before/After Preview."""
    info = erasure_info(metadata)
    return preview_rows(info.get("erased") or [], info.get("kept") or [], info.get("neighbours") or {})
