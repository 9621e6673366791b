"""Erase Concept's widgets → engine config: defaults from the one table, weights carried, bad values refused."""

import json

import pytest

from erasure_core.defaults import DEFAULTS
from erasure_core.errors import ConfigError
from erasure_core.frontend import concepts, settings


def build(**overrides):
    args = dict(
        concepts=None, erase_text="cat", keep_text="", method="eap", layers="method default",
        steps=settings.WIDGET_DEFAULTS["steps"], lr=settings.WIDGET_DEFAULTS["lr"], rank=4, seed=0, advanced="",
    )  # fmt: skip
    args.update(overrides)
    return settings.build_config(**args)


def test_widget_defaults_come_from_the_defaults_table():
    config = build()
    assert config.method == "eap"
    for key in ("steps", "lr", "rank", "layers", "k_closest", "negative_guidance"):
        assert getattr(config, key) == DEFAULTS["eap"][key]


def test_concepts_input_and_text_boxes_combine_with_weights():
    listed = concepts.build_concept_list("nudity: 2", "person")
    config = build(concepts=listed, erase_text="naked", keep_text="")
    assert config.erase == ("nudity", "naked") and config.erase_weights == (2.0, 1.0)
    assert config.keep == ("person",)
    only_input = build(concepts=listed, erase_text="", keep_text="")
    assert only_input.erase == ("nudity",) and only_input.erase_weights == (2.0,)


def test_advanced_settings_are_parsed_and_checked():
    config = build(method="esd", advanced="negative_guidance = 2  # stronger\nanchor = painting\nresolution = 256")
    assert config.negative_guidance == 2 and config.anchor == "painting" and config.resolution == 256
    with pytest.raises(ConfigError, match="Unknown setting"):
        build(advanced="negatve_guidance = 2")
    with pytest.raises(ConfigError, match="must look like"):
        build(advanced="just words")
    with pytest.raises(ConfigError, match="concept lists"):
        build(advanced="erase = 'dog'")


@pytest.mark.parametrize("steps", [0, settings.MAX_STEPS + 1])
def test_steps_out_of_range(steps):
    with pytest.raises(ConfigError, match="steps"):
        build(steps=steps)


def test_uce_ignores_training_widgets_and_keeps_its_layers():
    config = build(method="uce", layers="xattn")
    assert config.method == "uce" and config.layers == "xattn-kv"


def test_alpha_follows_rank_so_the_scale_stays_one():
    assert build(rank=16).alpha == 16.0


def test_unknown_method_and_layer_set():
    with pytest.raises(ConfigError, match="Unknown method"):
        build(method="magic")
    with pytest.raises(ConfigError, match="layers"):
        build(layers="everything")


def test_uce_ignores_the_training_widgets_and_the_note_says_so():
    uce = build(method="uce", steps=7, lr=0.5, rank=9)
    assert uce == build(method="uce")  # steps, learning rate and rank change nothing
    note = settings.ignored_widgets_note("uce")
    assert "steps, learning_rate and rank do not apply" in note and "max_rank" in note
    assert "not full" in settings.ignored_widgets_note("uce", "full")
    assert settings.ignored_widgets_note("uce", "xattn-kv") == note
    for method in ("esd", "eap", "age"):
        assert settings.ignored_widgets_note(method) == ""
        assert build(method=method, steps=7).steps == 7


def test_audit_reads_the_trained_settings_or_one_typed_concept_per_line():
    typed = settings.audit_config({}, "cat\n# a comment\ndog: 2\n", samples=3, seed=5)
    assert typed.erase == ("cat", "dog") and typed.erase_weights == (1.0, 2.0)
    assert (typed.audit_samples, typed.seed) == (3, 5)
    assert settings.audit_config({}, "a cat, sitting", 1, 0).erase == ("a cat, sitting",)  # a comma is text
    with pytest.raises(ConfigError, match="one per line"):
        settings.audit_config({}, "  \n", 1, 0)
    trained = build(method="age", erase_text="cat\nbus", keep_text="dog").resolved()
    metadata = {"erasure_config": json.dumps(trained.to_dict())}
    audited = settings.audit_config(metadata, "ignored", samples=2, seed=1)
    assert audited.method == "age" and audited.erase == ("cat", "bus") and audited.keep == ("dog",)
