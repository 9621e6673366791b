"""Models other than SD1.x/SD2.x/SDXL are refused with a message that names them."""

from types import SimpleNamespace

import pytest

from .conftest import pack_module

arch = pack_module("nodes.architectures")
ModelError = pack_module("erasure_core.errors").ModelError


def fake_model(config_name: str, model_class: str = "BaseModel"):
    config = type(config_name, (), {})()
    model = type(model_class, (), {"model_config": config})()
    return SimpleNamespace(model=model)


@pytest.mark.parametrize("name, expected", [("SD15", "sd1"), ("SD20", "sd2"), ("SDXL", "sdxl"), ("SSD1B", "sdxl")])
def test_supported(name, expected):
    assert arch.model_architecture(fake_model(name)) == expected


@pytest.mark.parametrize("name, model_class", [("SD3", "SD3"), ("Flux", "Flux"), ("SVD_img2vid", "SVD_img2vid")])
def test_unsupported_models_are_named(name, model_class):
    with pytest.raises(ModelError, match=f"'{name}' \\({model_class}\\).*SD1.5, SD2.x or SDXL"):
        arch.model_architecture(fake_model(name, model_class))


def test_nothing_connected():
    with pytest.raises(ModelError, match="No MODEL"):
        arch.model_architecture(None)
