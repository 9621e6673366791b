"""`python -m erasure_core batch` on this machine: every job's files, the same LoRA a single `erase` makes, failures
reported while the others go on, finished jobs skipped on a rerun, and an interrupted batch that leaves no half job."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from diffusers import StableDiffusionPipeline
from safetensors.torch import load_file

from erasure_core.backends.diffusers_backend import load_diffusers_model
from erasure_core.batch import Progress, load_job_file, run_batch
from erasure_core.callbacks import Callbacks
from erasure_core.cli import main
from erasure_core.files import _umask
from erasure_core.lora.adapter import load_lora_weights, remove_lora
from erasure_core.lora.export import load_lora
from erasure_core.testing import save_tiny_model
from erasure_core.trainer import lora_weights_for
from tests.erasure_core.backends.ldm_checkpoint import write_ldm_checkpoint

FAST = "steps = 3\nddim_steps = 5\nuntil_erased = false\naudit_ddim_steps = 5\n"


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("batch-models")
    folder = save_tiny_model(root / "tiny", "sd1")
    single = write_ldm_checkpoint(StableDiffusionPipeline.from_pretrained(folder), root / "community.safetensors")
    return {"folder": folder, "single": single}


def _job_file(tmp_path: Path, models: dict[str, Path], extra: str = "", steps: int = 3) -> Path:
    text = f"""
output = "out"
[[checkpoints]]
name = "tiny"
path = "{models["folder"]}"

[[checkpoints]]
name = "community"
path = "{models["single"]}"
config_dir = "{models["folder"]}"
outputs = {{ apply = true }}

[[concepts]]
name = "animals"
method = "esd"
erase = ["cat"]
keep = ["dog"]
{FAST.replace("steps = 3", f"steps = {steps}")}
[[concepts]]
name = "vehicles"
method = "uce"
erase = ["car"]
{extra}
"""
    path = tmp_path / "jobs.toml"
    path.write_text(text)
    return path


def _summary(tmp_path: Path) -> dict[str, dict]:
    return {row["job"]: row for row in json.loads((tmp_path / "out" / "summary.json").read_text())["jobs"]}


def test_a_batch_writes_every_job_as_a_single_erase_would(models: dict[str, Path], tmp_path: Path, capsys) -> None:
    assert main(["batch", str(_job_file(tmp_path, models))]) == 0
    out = tmp_path / "out"
    summary = _summary(tmp_path)
    assert set(summary) == {"tiny/animals", "tiny/vehicles", "community/animals", "community/vehicles"}
    assert all(row["status"] == "done" for row in summary.values())
    assert "| tiny | animals | esd | done | cat " in (out / "summary.md").read_text()
    for job, row in summary.items():
        folder = out / job
        assert {"lora.safetensors", "audit.json", "report.json", "result.json"} <= {p.name for p in folder.iterdir()}
        assert row["erasure"].keys() == set(row["erase"])
        assert row["kept_drift_max"] is not None or not row["keep"]  # the kept concepts' drift
        assert os.stat(folder / "lora.safetensors").st_mode & 0o777 == 0o666 & ~_umask()
    assert not (out / ".staging").exists() and not (out / ".batch.lock").exists()

    # the same LoRA, bit for bit, as the one `erase` writes with the same settings
    direct = tmp_path / "direct.safetensors"
    flags = ["--steps", "3", "--ddim-steps", "5", "--no-until-erased", "--audit-ddim-steps", "5"]
    command = ["erase", "--model", str(models["folder"]), "--method", "esd", "--erase", "cat", "--keep", "dog"]
    assert main([*command, *flags, "--out", str(direct)]) == 0
    batch, single = load_file(out / "tiny/animals/lora.safetensors"), load_file(direct)
    assert batch.keys() == single.keys() and all(torch.equal(batch[k], single[k]) for k in batch)

    # the merged single file gives the base model with the LoRA applied
    lora = load_lora(out / "community/animals/lora.safetensors")
    base = load_diffusers_model(models["single"], config=models["folder"])
    merged = load_diffusers_model(out / "community/animals/erased.safetensors", config=models["folder"])
    x, t = torch.randn(1, *base.latent_shape(32), generator=torch.Generator().manual_seed(0)), torch.tensor([500])
    cond = base.encode_prompts(["cat"])
    with torch.no_grad():
        original = base.predict_noise(x, t, cond)
        load_lora_weights(base.unet, lora_weights_for(base, lora))
        edited = base.predict_noise(x, t, cond)
        remove_lora(base.unet)
        baked = merged.predict_noise(x, t, cond)
    assert (edited - original).abs().max() > 1e-4
    torch.testing.assert_close(baked, edited, atol=1e-4, rtol=1e-3)


def test_a_failing_job_is_reported_and_the_others_go_on(models: dict[str, Path], tmp_path: Path, capsys) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    for part in ("model_index.json", "scheduler", "unet", "vae", "text_encoder", "tokenizer"):
        source = models["folder"] / part
        target = broken / part
        if source.is_dir():
            target.mkdir()
            for f in source.iterdir():
                target.joinpath(f.name).write_bytes(f.read_bytes())
        else:
            target.write_bytes(source.read_bytes())
    weights = next((broken / "unet").glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:1000])  # a download cut short
    path = tmp_path / "jobs.toml"
    path.write_text(
        f'output = "out"\n[[checkpoints]]\nname = "broken"\npath = "{broken}"\n'
        f'[[checkpoints]]\nname = "tiny"\npath = "{models["folder"]}"\n'
        f'[[concepts]]\nname = "cat"\nmethod = "esd"\nerase = ["cat"]\n{FAST}'
    )
    assert main(["batch", str(path)]) == 1
    summary = _summary(tmp_path)
    assert summary["broken/cat"]["status"] == "failed" and summary["broken/cat"]["error"]
    assert summary["tiny/cat"]["status"] == "done"
    assert not (tmp_path / "out" / "broken").exists()
    assert "failed" in (tmp_path / "out" / "summary.md").read_text()
    captured = capsys.readouterr()
    assert "broken/cat: failed" in captured.out + captured.err
    assert "batch:" in captured.err and "tiny/cat:" in captured.err  # a bar for the batch and one for the job


def test_a_batch_started_again_skips_what_it_finished(models: dict[str, Path], tmp_path: Path) -> None:
    assert main(["batch", str(_job_file(tmp_path, models))]) == 0
    loras = {p: p.stat().st_mtime_ns for p in (tmp_path / "out").rglob("lora.safetensors")}
    assert main(["batch", str(_job_file(tmp_path, models))]) == 0
    assert {row["status"] for row in _summary(tmp_path).values()} == {"done before"}
    assert {p: p.stat().st_mtime_ns for p in loras} == loras  # nothing retrained or rewritten

    # a changed setting is a new job: only the pairs of that concept set run again
    assert main(["batch", str(_job_file(tmp_path, models, steps=4))]) == 0
    status = {job: row["status"] for job, row in _summary(tmp_path).items()}
    assert status == {
        "tiny/animals": "done",
        "community/animals": "done",
        "tiny/vehicles": "done before",
        "community/vehicles": "done before",
    }
    assert load_lora(tmp_path / "out/tiny/animals/lora.safetensors").info()["steps"] == 4


class _Interrupt(Progress):
    """Ctrl-C in the second job, two steps in."""

    def __init__(self) -> None:
        self.jobs = 0

    def job_callbacks(self, job) -> Callbacks:
        self.jobs += 1
        second = self.jobs == 2

        def on_step(step: int, total: int, info: dict) -> None:
            if second and step == 2:
                raise KeyboardInterrupt

        return Callbacks(on_step=on_step)


def test_an_interrupted_batch_leaves_no_half_job_and_finishes_on_the_next_run(
    models: dict[str, Path], tmp_path: Path
) -> None:
    plan = load_job_file(_job_file(tmp_path, models, extra='checkpoints = ["tiny"]'))
    plan = type(plan)(plan.source, plan.output, tuple(j for j in plan.jobs if j.checkpoint.name == "tiny"))
    plan = type(plan)(plan.source, plan.output, (plan.jobs[1], plan.jobs[0]))  # uce first, then esd
    with pytest.raises(KeyboardInterrupt):
        run_batch(plan, _Interrupt())
    out = tmp_path / "out"
    assert (out / "tiny/vehicles/lora.safetensors").is_file()
    assert not (out / "tiny/animals").exists() and not list(out.rglob("*.partial"))
    assert not (out / ".staging").exists() and not (out / ".batch.lock").exists()
    assert _summary(tmp_path)["tiny/animals"]["status"] == "not run"

    rows = run_batch(plan)
    assert {r.job: r.status for r in rows} == {"tiny/vehicles": "done before", "tiny/animals": "done"}


def test_the_demo_model_gets_its_grid_and_attack_audit(tmp_path: Path) -> None:
    from PIL import Image

    path = tmp_path / "jobs.toml"
    path.write_text(
        'output = "out"\n[outputs]\npreview = true\nattack = true\nattack_budget = 10\n'
        '[[checkpoints]]\npath = "demo"\n[[concepts]]\nname = "fruit"\nmethod = "uce"\nerase = ["apple"]\n'
    )
    rows = run_batch(load_job_file(path))
    assert [r.status for r in rows] == ["done"]
    folder = tmp_path / "out" / "demo" / "fruit"
    assert Image.open(folder / "preview.png").size[0] > 0
    attack = json.loads((folder / "attack.json").read_text())["apple"]
    assert 0.0 <= attack["success_rate"] <= 1.0 and attack["attacks"]
    assert rows[0].record["attack_success"] == {"apple": attack["success_rate"]}
    assert "attack success apple" in (tmp_path / "out" / "summary.md").read_text()
