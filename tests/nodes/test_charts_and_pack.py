"""The audit chart draws one bar per probe, and the pack root imports without ComfyUI."""

import numpy as np

from tests.pack import ROOT, load_pack

from .conftest import pack_module

charts = pack_module("nodes.charts")


def test_chart_has_one_bar_per_row_in_the_role_colour():
    rows = [
        {"prompt": "cat", "role": "erased", "erasure": 0.8, "drift": 0.9},
        {"prompt": "dog", "role": "kept", "drift": 0.1},
        {"prompt": "kitten", "role": "neighbour", "drift": 0.0},
    ]
    image = charts.audit_chart(rows)
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    red = np.all(image == charts.ROLE_COLOURS["erased"], axis=-1).sum()
    green = np.all(image == charts.ROLE_COLOURS["kept"], axis=-1).sum()
    blue = np.all(image == charts.ROLE_COLOURS["neighbour"], axis=-1).sum()
    assert red > 6 * green > 0 and blue == 0  # bars of 0.8 and 0.1 of the length; drift 0 draws nothing


def test_pack_root_imports_without_comfyui_and_points_at_its_web_folder():
    pack = load_pack()
    assert callable(pack.comfy_entrypoint)
    web = ROOT / pack.WEB_DIRECTORY
    assert web.is_dir() and list(web.glob("*.js"))
