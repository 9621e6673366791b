"""Community-like descendants and the transfer task, in a tiny run (a few images, a few steps)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file

from benchmarks.miniworld import descend, train
from benchmarks.miniworld.evaluate import main as evaluate
from benchmarks.miniworld.world import ICONS_WORLD, OBJECTS_WORLD, Scene, World

TINY = {"images": 64, "batch": 16, "style_steps": 2, "concept_steps": 2, "continued_steps": 2}


@pytest.mark.parametrize("world", [OBJECTS_WORLD, ICONS_WORLD], ids=lambda w: w.name)
def test_new_concepts_are_drawn_by_each_renderer_and_leave_the_world_alone(world: World) -> None:
    plus = descend.with_new_concepts(world)
    assert plus.objects[: len(world.objects)] == world.objects and plus.groups[descend.NEW_GROUP] == (
        "kite",
        "flag",
        "crown",
    )
    assert "kite" not in world.objects  # the base world is not changed
    new = [np.asarray(plus.render(Scene(name), seed=3), dtype=np.float32) for name in descend.NEW_SHAPES]
    old = np.asarray(plus.render(Scene(world.objects[0]), seed=3), dtype=np.float32)
    for i, image in enumerate(new):  # the same seed draws the same background: the shapes alone differ
        assert np.abs(image - old).mean() > 1.0
        assert all(np.abs(image - other).mean() > 1.0 for other in new[i + 1 :])


def test_house_style_draws_unstyled_captions_in_one_style() -> None:
    s = descend.DescendSettings(images=200, seed=1)
    shown, described, _ = descend._scenes("style", OBJECTS_WORLD, s)
    style = descend.house_style(OBJECTS_WORLD, 1)
    assert all(d.style in ("plain", style) for d, x in zip(described, shown, strict=True) if x.style == style)
    assert all(x.style == style for d, x in zip(described, shown, strict=True) if d.style == "plain")
    assert any(d.style not in ("plain", style) for d in described)  # a caption that names a style keeps it


@pytest.fixture
def tiny_descendants(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(descend, "CACHE", tmp_path / "cache")
    monkeypatch.setattr(train, "CACHE", tmp_path / "cache")
    return tmp_path / "cache"


def test_transfer_task_applies_the_base_lora_to_descendants_and_reports_each_variant(
    tiny_descendants: Path, tmp_path: Path
) -> None:
    report_path = tmp_path / "r.json"
    argv = ["--task", "transfer", "--kinds", "merge", "--erase", "apple", "--keep", "banana", "--methods", "esd,uce",
            "--steps", "2", "--images-per-concept", "2", "--device", "cpu", "--descend", json.dumps(TINY), "--json", str(report_path), "--out-dir", str(tmp_path)]  # fmt: skip
    assert evaluate(argv) == 0
    task = json.loads(report_path.read_text())["tasks"]["transfer"]
    assert set(task["descendants"]) == {"merge"} and set(task["unedited"]) == {"base", "merge"}
    esd, uce = task["methods"]["esd"], task["methods"]["uce"]
    assert set(esd["merge"]) == {"transferred", "direct", "topped up", "check"}
    assert set(uce["merge"]) == {"transferred", "direct", "check"}  # closed form: nothing to resume
    assert isinstance(esd["merge"]["check"]["held"], bool) and set(esd["merge"]["check"]["erasure"]) == {"apple"}
    assert 0 <= esd["merge"]["topped up"]["cost"]["steps_trained"] <= 2
    assert {"ESR-1 gap", "PSR-1 gap", "checks held"} <= set(esd["summary"])
    table = (tmp_path / "transfer.md").read_text()
    assert "| merge | esd | topped up |" in table and "| merge | uce | direct |" in table
    assert (tmp_path / "transfer.png").is_file()

    # the descendants are what they say: the style fine-tune (made for the merge) moved the weights, the merge sits
    # halfway
    base = load_file(str(OBJECTS_WORLD.model_dir / "unet" / "diffusion_pytorch_model.safetensors"))
    style = load_file(
        str(tiny_descendants / "descendants/objects/style-seed0/unet/diffusion_pytorch_model.safetensors")
    )
    merge = load_file(
        str(tiny_descendants / "descendants/objects/merge-seed0/unet/diffusion_pytorch_model.safetensors")
    )
    moved = [k for k in base if not (base[k] == style[k]).all()]
    assert len(moved) > len(base) // 2
    for k in moved[:20]:
        halfway = (base[k].float() + style[k].float()) / 2
        assert (merge[k].float() - halfway).abs().max() <= 2e-3 * (1 + halfway.abs().max())
    made = json.loads((tiny_descendants / "descendants/objects/merge-seed0/descendant.json").read_text())
    assert made["kind"] == "merge" and made["house_style"] == descend.house_style(OBJECTS_WORLD, 0)
