"""Pictures of a run: the audit as one bar per probe prompt, so users see at a glance what the erasure touched, and
the training loss curve."""

from __future__ import annotations

from typing import Any

import numpy as np

ROLE_COLOURS = {
    "erased": (200, 60, 60),
    "kept": (60, 140, 60),
    "guarded": (60, 160, 120),
    "neighbour": (70, 110, 190),
}


def audit_chart(rows: list[dict[str, Any]], width: int = 640) -> np.ndarray:
    """An RGB uint8 image: per prompt, erasure (erased prompts) or drift (the others) as a horizontal bar in 0..1.

    Erasure 1 means the prediction moved all the way to the method's target; drift is the change relative to the
    prompt's own guidance direction, where 0 is untouched (drift above 1 is drawn at 1 and labelled).
    """
    from PIL import Image, ImageDraw

    if not rows:
        rows = [{"prompt": "(no probes: the audit was skipped)", "role": "kept", "drift": 0.0}]
    bar_h, gap, top = 18, 6, 26
    label_w = min(260, 12 + 7 * max(len(r["prompt"]) for r in rows))
    height = top + len(rows) * (bar_h + gap) + 10
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    draw.text((8, 6), "erasure (erased, red) / drift (kept green, nearby blue); 0 = untouched", fill="black")
    span = width - label_w - 70
    for i, row in enumerate(rows):
        y = top + i * (bar_h + gap)
        value = float(row.get("erasure", row.get("drift", 0.0)))
        prompt = row["prompt"] if len(row["prompt"]) <= 36 else row["prompt"][:33] + "..."
        draw.text((8, y + 3), prompt, fill="black")
        draw.rectangle([label_w, y, label_w + span, y + bar_h], outline=(200, 200, 200))
        filled = int(span * min(max(value, 0.0), 1.0))
        if filled:
            draw.rectangle([label_w, y, label_w + filled, y + bar_h], fill=ROLE_COLOURS.get(row["role"], (90, 90, 90)))
        draw.text((label_w + span + 6, y + 3), f"{value:.2f}", fill="black")
    return np.asarray(image)


def loss_chart(losses: list[float], width: int = 480, height: int = 220) -> np.ndarray:
    """An RGB uint8 image of the training loss per step, with its moving average over about 5% of the run.

    The y axis spans the smoothed curve's range (with a margin), so a few noisy steps do not flatten it.
    """
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    left, top, right, bottom = 52, 22, width - 10, height - 22
    values = np.asarray(losses, dtype=np.float64)
    values = values[np.isfinite(values)]
    draw.text((8, 4), f"training loss ({len(losses)} steps)", fill="black")
    draw.rectangle([left, top, right, bottom], outline=(200, 200, 200))
    if values.size < 2:
        return np.asarray(image)
    window = max(1, values.size // 20)
    smooth = np.convolve(values, np.ones(window) / window, mode="valid")
    low, high = float(smooth.min()), float(smooth.max())
    margin = (high - low) * 0.1 or abs(high) * 0.1 or 1.0
    low, high = low - margin, high + margin

    def points(series: np.ndarray, offset: int) -> list[tuple[float, float]]:
        xs = left + (np.arange(series.size) + offset) * (right - left) / max(1, values.size - 1)
        ys = bottom - (np.clip(series, low, high) - low) * (bottom - top) / (high - low)
        return list(zip(xs.tolist(), ys.tolist(), strict=True))

    draw.line(points(values, 0), fill=(190, 200, 225), width=1)
    draw.line(points(smooth, window - 1), fill=(40, 80, 170), width=2)
    draw.text((4, top - 4), f"{high:.3g}", fill="black")
    draw.text((4, bottom - 8), f"{low:.3g}", fill="black")
    draw.text((left, bottom + 4), "1", fill="black")
    draw.text((right - 30, bottom + 4), str(len(losses)), fill="black")
    return np.asarray(image)
