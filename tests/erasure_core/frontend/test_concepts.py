"""Concept List parsing: what users type becomes concepts and weights, or an error that says what to fix."""

import pytest

from erasure_core.errors import ConfigError
from erasure_core.frontend import concepts


@pytest.mark.parametrize(
    "line, expected",
    [
        ("Van Gogh", ("Van Gogh", 1.0)),
        ("  Van   Gogh  ", ("Van Gogh", 1.0)),
        ("nudity: 1.5", ("nudity", 1.5)),
        ("(nudity:2)", ("nudity", 2.0)),
        ("a photo of a dog, outdoors", ("a photo of a dog, outdoors", 1.0)),
        ("Ajin: Demi Human", ("Ajin: Demi Human", 1.0)),  # a colon that is not followed by a number is text
        ("# a comment", None),
        ("   ", None),
    ],
)
def test_lines(line, expected):
    assert concepts.parse_line(line) == expected


@pytest.mark.parametrize("line, message", [("cat: 0", "above 0"), ("cat: 11", "at most 10"), (": 2", "no concept")])
def test_bad_lines_say_what_to_fix(line, message):
    with pytest.raises(ConfigError, match=message):
        concepts.parse_line(line)


def test_duplicates_are_merged_with_a_warning():
    names, weights, warnings = concepts.parse_concepts("cat\nDog\ncat: 2\n\n dog", "erase")
    assert names == ("cat", "Dog") and weights == (1.0, 1.0)
    assert len(warnings) == 2 and "line 3" in warnings[0] and "line 1" in warnings[0]


def test_empty_erase_list_is_refused():
    with pytest.raises(ConfigError, match="empty"):
        concepts.build_concept_list("# nothing\n\n", "dog")


def test_a_concept_both_erased_and_kept_is_refused():
    with pytest.raises(ConfigError, match="both erased and kept"):
        concepts.build_concept_list("Cat", "cat")


def test_too_many_concepts_are_refused():
    with pytest.raises(ConfigError, match="at most"):
        concepts.build_concept_list("\n".join(f"concept {i}" for i in range(concepts.MAX_CONCEPTS + 1)))


def test_presets_parse_and_can_be_extended():
    for name in concepts.PRESETS:
        if name == "custom":
            continue
        listed = concepts.merge_presets(name, "", "")
        assert listed.erase and not ({c.lower() for c in listed.erase} & {c.lower() for c in listed.keep})
    extended = concepts.merge_presets("famous painters", "Claude Monet: 2", "")
    assert extended.erase == ("Van Gogh", "Claude Monet") and extended.erase_weights == (1.0, 2.0)
    with pytest.raises(ConfigError, match="Unknown preset"):
        concepts.merge_presets("nope", "", "")


def test_summary_names_counts_weights_and_warnings():
    text = concepts.build_concept_list("cat\ncat\nnudity: 2", "dog").summary()
    assert "erase (2): cat, nudity (2)" in text and "keep (1): dog" in text and "warning:" in text
