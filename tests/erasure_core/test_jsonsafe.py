"""Reports, LoRA headers and HTTP answers stay valid JSON when an audit holds NaN or infinity."""

import json
import math

import pytest

from erasure_core import jsonsafe
from erasure_core.lora.export import LoraFile, build_metadata


def test_non_finite_numbers_become_null_everywhere_in_the_value() -> None:
    value = {"a": math.nan, "rows": [{"drift": math.inf}, (1.0, -math.inf)], "ok": 2, "text": "NaN"}
    assert json.loads(jsonsafe.dumps(value)) == {
        "a": None,
        "rows": [{"drift": None}, [1.0, None]],
        "ok": 2,
        "text": "NaN",
    }


def test_a_lora_header_with_a_nan_audit_parses_as_strict_json() -> None:
    info = {"audit": [{"prompt": "cat", "role": "erased", "erasure": math.nan, "drift": 0.5}]}
    meta = build_metadata(arch="sd1", output_name="x", rank=4, alpha=4, info=info, base_model="m", description="d")
    strict = json.loads(meta["erasure_audit"], parse_constant=lambda word: pytest.fail(f"bare {word} in JSON"))
    assert strict[0]["erasure"] is None and strict[0]["drift"] == 0.5
    assert LoraFile({}, meta).info()["audit"][0]["erasure"] is None
