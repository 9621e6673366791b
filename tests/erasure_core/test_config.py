from __future__ import annotations

import pytest

from erasure_core import AgeConfig, ConfigError, EapConfig, EsdConfig, UceConfig, make_config, method_defaults
from erasure_core.config import config_from_dict
from erasure_core.defaults import DEFAULTS


def test_unset_fields_take_the_methods_defaults_from_the_table() -> None:
    eap, esd = EapConfig(erase=["cat"]), EsdConfig(erase=["cat"])
    assert eap.loss_space == "x0" == DEFAULTS["eap"]["loss_space"]
    assert esd.loss_space == "eps" == DEFAULTS["esd"]["loss_space"]
    assert (
        eap.k_closest == DEFAULTS["eap"]["k_closest"]
        and AgeConfig(erase=["x"]).k_closest == DEFAULTS["age"]["k_closest"]
    )
    assert UceConfig(erase=["cat"]).layers == "xattn-kv"
    assert method_defaults("eap") == dict(DEFAULTS["eap"])


def test_every_table_entry_is_a_config_field() -> None:
    for method, row in DEFAULTS.items():
        config = make_config(method, erase=["cat"])
        for key, value in row.items():
            assert getattr(config, key) == value, (method, key)


def test_concepts_are_stripped_and_deduplicated() -> None:
    config = EsdConfig(erase=["  Van  Gogh ", "van gogh", "cat"], keep="dog")
    assert config.erase == ("Van Gogh", "cat") and config.keep == ("dog",)


@pytest.mark.parametrize("erase", [[], [""], ["   "], ["cat", " \t"]])
def test_empty_or_whitespace_concept_raises(erase: list[str]) -> None:
    with pytest.raises(ConfigError, match="concept"):
        EsdConfig(erase=erase)


def test_concept_both_erased_and_kept_raises() -> None:
    with pytest.raises(ConfigError, match="both erased and kept"):
        EapConfig(erase=["Cat"], keep=["cat"])


def test_unknown_method_raises() -> None:
    with pytest.raises(ConfigError, match="Unknown method 'esdx'"):
        make_config("esdx", erase=["cat"])


def test_unknown_layer_set_raises() -> None:
    with pytest.raises(ConfigError, match="layers.*xattn"):
        EsdConfig(erase=["cat"], layers="attention")


def test_unknown_setting_raises() -> None:
    with pytest.raises(ConfigError, match="Unknown setting"):
        make_config("esd", erase=["cat"], gumbel_lr=0.1)


@pytest.mark.parametrize(
    ("field", "value"), [("rank", 0), ("steps", 0), ("lr", -1.0), ("lr", float("nan")), ("energy", 1.5)]
)
def test_out_of_range_numbers_raise(field: str, value: float) -> None:
    method = "uce" if field == "energy" else "esd"
    with pytest.raises(ConfigError, match=field):
        make_config(method, erase=["cat"], **{field: value})


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("steps", "abc", "a whole number"),
        ("steps", 2.5, "a whole number"),
        ("lr", "fast", "a number"),
        ("cuda_graphs", "yes", "true or false"),
        ("anchor", 3, "a text"),
        ("pool_refreshes", "many", "'auto'"),
    ],
)
def test_a_value_of_the_wrong_kind_says_what_to_give(field: str, value, says: str) -> None:
    """Settings arrive as text from advanced boxes, JSON and the command line: a word where a number belongs is
    refused before the run, not in the middle of it."""
    with pytest.raises(ConfigError, match=f"`{field}` is .*give .*{says}"):
        make_config("eap", erase=["cat"], **{field: value})


def test_values_of_the_right_kind_pass() -> None:
    config = make_config("age", erase=["cat"], lr=1, steps=3, pool_refreshes="auto", joint_step=True, anchor="dog")
    assert config.lr == 1 and config.joint_step is True


def test_uce_refuses_layers_it_cannot_edit() -> None:
    with pytest.raises(ConfigError, match="xattn-kv"):
        UceConfig(erase=["cat"], layers="noxattn")


def test_empty_vocabulary_raises() -> None:
    with pytest.raises(ConfigError, match="vocabulary"):
        EapConfig(erase=["cat"], vocabulary=("  ",))


def test_to_dict_round_trips() -> None:
    config = AgeConfig(erase=["cat", "car"], keep=["dog"], steps=7, vocabulary=("a", "b"), detached_erasure_term=True)
    assert config_from_dict(config.to_dict()) == config


def test_resolved_config_keeps_the_whole_runs_choices_in_a_shorter_part() -> None:
    age = make_config("age", erase=["cat"])  # one concept in 500 steps: the joint step, 16 refreshes
    part = age.resolved().replace(steps=20)
    assert (part.pool_refreshes, part.joint_step) == (16, True)
    assert age.replace(steps=20).resolved_joint_step() is False  # what the part alone would resolve to
    esd = make_config("esd", erase=["cat"]).resolved()
    assert esd.pool_refreshes == 4 and esd.replace(steps=20).resolved_pool_refreshes() == 4
    assert make_config("esd", erase=["cat"], layers="noxattn").resolved().pool_refreshes == 0
