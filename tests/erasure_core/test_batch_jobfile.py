"""The batch job file: what it expands to, and bad files refused before any job starts, with nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest

from erasure_core.batch import load_job_file
from erasure_core.cli import main
from erasure_core.errors import ConfigError

GOOD = """
output = "out"

[[checkpoints]]
path = "model_a"

[[checkpoints]]
name = "second"
path = "model_b.safetensors"
outputs = { apply = true }

[[concepts]]
name = "fruit"
method = "esd"
erase = ["apple"]
keep = ["banana"]
steps = 7

[[concepts]]
method = "uce"
erase = ["car", "truck"]
checkpoints = ["second"]
"""


def _folder_model(path: Path) -> None:
    path.mkdir()
    (path / "model_index.json").write_text("{}")


def _write(tmp_path: Path, text: str) -> Path:
    _folder_model(tmp_path / "model_a")
    (tmp_path / "model_b.safetensors").write_bytes(b"not read while planning")
    path = tmp_path / "jobs.toml"
    path.write_text(text)
    return path


def test_a_job_file_expands_to_checkpoint_by_concept_jobs(tmp_path: Path, capsys) -> None:
    path = _write(tmp_path, GOOD)
    assert main(["batch", str(path), "--dry-run"]) == 0  # lists the jobs, runs and writes nothing
    assert "second/car-truck: to run" in capsys.readouterr().out
    plan = load_job_file(path)
    assert plan.output == tmp_path / "out"
    # checkpoint by checkpoint (each model loads once); the uce set runs only on the checkpoint it names
    assert [j.name for j in plan.jobs] == ["model_a/fruit", "second/fruit", "second/car-truck"]
    first = plan.jobs[0]
    assert first.config.method == "esd" and first.config.steps == 7 and first.config.keep == ("banana",)
    assert first.checkpoint.path == str(tmp_path / "model_a")  # relative to the job file
    assert not first.outputs.apply and plan.jobs[1].outputs.apply  # the checkpoint's override
    assert not list(tmp_path.glob("out*"))  # planning writes nothing


def test_the_demo_model_gets_its_shorter_recipe_unless_the_file_sets_a_value(tmp_path: Path) -> None:
    text = '[[checkpoints]]\npath = "demo"\n[[concepts]]\nerase = ["apple"]\nmethod = "esd"\nlr = 0.01\n'
    job = load_job_file(_write(tmp_path, text)).jobs[0]
    assert job.config.steps == 100 and job.config.lr == 0.01  # DEMO_OVERRIDES' steps, the file's lr


BAD = {
    "an unknown top-level key": ('outptu = "x"\n' + GOOD, "unknown key 'outptu'"),
    "an unknown checkpoint key": (GOOD.replace('path = "model_a"', 'path = "model_a"\nweights = 1'), "'weights'"),
    "an unknown output": (GOOD.replace("apply = true", "aply = true"), "unknown key 'aply'"),
    "an unknown setting": (GOOD.replace("steps = 7", "stpes = 7"), "stpes"),
    "a setting out of range": (GOOD.replace("steps = 7", "steps = 0"), "steps"),
    "an unknown method": (GOOD.replace('"uce"', '"fast"'), "Unknown method 'fast'"),
    "a missing checkpoint": (GOOD.replace("model_a", "model_x"), "does not exist"),
    "an empty concept set": (GOOD.replace('erase = ["apple"]', "erase = []"), "'erase' is empty"),
    "a concept set without erase": (GOOD.replace('erase = ["apple"]\n', ""), "'erase' is empty"),
    "two jobs writing the same output": (GOOD.replace('name = "second"', 'name = "model_a"'), "same output folder"),
    "a restriction to an unknown checkpoint": (GOOD.replace('["second"]', '["third"]'), "'third'"),
    "apply on a folder model": (
        GOOD.replace('path = "model_a"', 'path = "model_a"\noutputs = {apply = true}'),
        "not one",
    ),
    "a wrong type": (GOOD.replace("apply = true", 'apply = "yes"'), "must be a bool"),
    "no concept sets": (GOOD[: GOOD.index("[[concepts]]")], "at least one"),
    "invalid TOML": (GOOD + "\n[[concepts\n", "not valid TOML"),
    "a pickled checkpoint": (GOOD.replace("model_b.safetensors", "model_a/model.ckpt"), "not a .safetensors"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_job_file_is_refused_before_anything_is_written(case: str, tmp_path: Path, capsys) -> None:
    text, message = BAD[case]
    path = _write(tmp_path, text)
    (tmp_path / "model_a" / "model.ckpt").write_bytes(b"pickle")
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_job_file(path)
    assert main(["batch", str(path)]) == 2  # the CLI says so too
    assert capsys.readouterr().err.startswith("error: ")
    assert not (tmp_path / "out").exists()


def test_an_unreachable_cluster_is_refused_before_anything_is_written(tmp_path: Path, capsys) -> None:
    pytest.importorskip("ray")
    path = _write(tmp_path, GOOD.replace(", apply = true", "").replace("outputs = { apply = true }", ""))
    assert main(["batch", str(path), "--ray", "127.0.0.1:9"]) == 2
    assert "Cannot reach the Ray cluster at 127.0.0.1:9" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_the_example_job_file_is_valid(tmp_path: Path) -> None:
    import shutil

    from erasure_core.testing import save_tiny_model

    example = Path(__file__).resolve().parents[2] / "examples" / "batch_demo.toml"
    shutil.copy(example, tmp_path / "batch_demo.toml")
    save_tiny_model(tmp_path / "tiny-sd1", "sd1")  # what its first comment says to make
    plan = load_job_file(tmp_path / "batch_demo.toml")
    assert [j.name for j in plan.jobs] == ["demo/fruit", "demo/vehicles", "tiny-sd1/fruit", "tiny-sd1/vehicles"]
    assert plan.jobs[0].outputs.preview and not plan.jobs[2].outputs.preview


def test_a_model_is_fingerprinted_by_its_content_not_its_path(tmp_path: Path) -> None:
    import shutil

    from erasure_core.batch.keys import model_fingerprint
    from erasure_core.testing import save_tiny_model

    a = save_tiny_model(tmp_path / "a", "sd1", seed=0)
    shutil.copytree(a, tmp_path / "copy")
    b = save_tiny_model(tmp_path / "b", "sd1", seed=1)  # the same architecture, other weights (a fine-tune)
    assert model_fingerprint(str(a)) == model_fingerprint(str(tmp_path / "copy"))
    assert model_fingerprint(str(a)) != model_fingerprint(str(b))
