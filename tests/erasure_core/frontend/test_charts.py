"""The audit chart draws one bar per probe prompt, in its role's colour."""

import numpy as np

from erasure_core.frontend import charts


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
