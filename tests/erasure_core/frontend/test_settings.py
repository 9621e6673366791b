"""Erase Concept's widgets → engine config: defaults from the one table, weights carried, bad values refused."""

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
