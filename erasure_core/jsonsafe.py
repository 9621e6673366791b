"""JSON that every parser reads: Python writes NaN and infinity as bare words that JSON itself (and browsers, and
most other languages' parsers) refuse. An audit of a broken or random-weight model can hold them."""

from __future__ import annotations

import json
import math
from typing import Any


def json_safe(value: Any) -> Any:
    """`value` with every non-finite float replaced by None (JSON null), through dicts, lists and tuples."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def dumps(value: Any, **kwargs: Any) -> str:
    """`json.dumps` of `json_safe(value)`; raises if a non-finite number slips through another type."""
    return json.dumps(json_safe(value), allow_nan=False, **kwargs)
