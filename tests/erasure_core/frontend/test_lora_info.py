"""The nodes' text about a LoRA comes from its header, decoded by the engine; other LoRAs are recognised as such."""

import json

from erasure_core.frontend import lora_info as info


def header(**fields):
    return {f"erasure_{k}": json.dumps(v) for k, v in fields.items()} | {"ss_network_dim": "4"}


def test_describe_lists_concepts_found_words_and_audit_rows():
    meta = header(
        method="eap",
        erased=["Van Gogh"],
        kept=["Monet"],
        found={"Van Gogh": ["gogh", "painting"]},
        audit=[
            {"prompt": "Van Gogh", "role": "erased", "erasure": 0.75, "drift": 1.2},
            {"prompt": "Monet", "role": "kept", "drift": 0.05},
        ],
    )
    text = info.describe(meta)
    assert "method: eap" in text and "erased: Van Gogh" in text and "kept: Monet" in text
    assert "words the concept search settled on for 'Van Gogh': gogh, painting" in text
    assert "0.75" in text and "0.05" in text


def test_other_loras_and_losses():
    assert "not made by concept erasure" in info.describe({"ss_network_dim": "8"})
    assert info.recorded_losses(header(losses=[0.5, 0.25])) == [0.5, 0.25]
    assert info.recorded_losses({}) == []
    assert info.preview_rows_of(header(erased=["a"], kept=["b", "c"], neighbours={"a": ["d"]})) == [
        ("erased", "a"),
        ("kept", "b"),
        ("kept", "c"),
        ("neighbour", "d"),
    ]


def test_an_audit_of_non_finite_predictions_reads_as_not_available():
    meta = header(
        method="esd", erased=["cat"], audit=[{"prompt": "cat", "role": "erased", "erasure": None, "drift": None}]
    )
    assert "n/a" in info.describe(meta)
