"""The main job from the command line, run in-process on a tiny model folder."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from erasure_core import load_lora
from erasure_core.cli import main
from erasure_core.testing import save_tiny_model


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("cli") / "tiny", "sd1")


def _erase(model: Path, tmp_path: Path, *extra: str) -> int:
    return main(
        [
            "erase",
            "--model",
            str(model),
            "--erase",
            "cat",
            "--keep",
            "dog",
            "--steps",
            "3",
            "--ddim-steps",
            "5",
            "--out",
            str(tmp_path / "cat.safetensors"),
            "--report",
            str(tmp_path / "report.json"),
            *extra,
        ]
    )


def test_erase_writes_the_lora_and_a_full_report(model: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert (
        _erase(model, tmp_path, "--method", "eap", "--k-closest", "8", "--num-centers", "4", "--no-gumbel-hard") == 0
    )
    out = capsys.readouterr().out
    assert "erasure" in out and "drift" in out and "LoRA written to" in out
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["settings"]["method"] == "eap" and report["settings"]["gumbel_hard"] is False
    assert report["settings"]["k_closest"] == 8 and len(report["losses"]) == 3 and report["found"]["cat"]
    assert report["audit"]["rows"][0]["prompt"] == "cat" and report["unet_evals"] > 0
    assert report["seconds"] > 0 and report["peak_memory_mb"] > 0
    assert report["stop_reason"] in out and "CPU" in report["machine"]  # what it printed, and where it ran
    assert load_lora(tmp_path / "cat.safetensors").info()["erased"] == ["cat"]


def test_audit_command_reads_our_metadata(model: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert _erase(model, tmp_path, "--method", "esd") == 0
    capsys.readouterr()
    lora, report = tmp_path / "cat.safetensors", tmp_path / "audit.json"
    assert (
        main(["audit", "--model", str(model), "--lora", str(lora), "--prompt", "horse", "--report", str(report)]) == 0
    )
    out = capsys.readouterr().out
    assert "cat" in out and "horse" in out and "dog" in out
    audit = json.loads(report.read_text())
    erasure = next(r["erasure"] for r in audit["rows"] if r["prompt"] == "cat")
    made_on = next(r["erasure"] for r in load_lora(lora).info()["audit"] if r["prompt"] == "cat")
    assert abs(erasure - made_on) <= 0.02 and audit["held"] is True  # on its own model: what its final audit said
    assert audit["verdict"] in out and f"cat {erasure:.2f}" in audit["verdict"]


def test_existing_output_is_not_overwritten(model: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "cat.safetensors").write_bytes(b"mine")
    assert _erase(model, tmp_path, "--method", "uce") == 2
    assert "already exists" in capsys.readouterr().err and (tmp_path / "cat.safetensors").read_bytes() == b"mine"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--model", "demo", "--erase", "cat", "--preview", "--method", "esd", "--vocabulary", "a,b"],
            "--vocabulary applies",
        ),
        (["--model", "/nonexistent/model", "--erase", "cat"], "Model not found"),
        (["--erase", " "], "empty"),
        (["--erase", "cat", "--keep", "cat"], "both erased and kept"),
        (["--erase", "cat", "--method", "esd", "--k-closest", "3"], "does not apply"),
    ],
)
def test_bad_input_exits_2_with_a_message(
    model: Path, tmp_path: Path, capsys: pytest.CaptureFixture, args: list[str], message: str
) -> None:
    argv = ["erase", "--out", str(tmp_path / "x.safetensors"), *args]
    if "--model" not in args:
        argv += ["--model", str(model)]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x.safetensors").exists()


def test_defaults_are_printed_from_the_table(capsys: pytest.CaptureFixture) -> None:
    assert main(["erase", "--method", "age", "--defaults"]) == 0
    assert json.loads(capsys.readouterr().out)["k_closest"] == 100


@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [
        *[("pool_refreshes", v, e) for v, e in [("auto", "auto"), ("AUTO", "auto"), ("3", 3), ("0", 0)]],
        *[("ddim_steps", v, e) for v, e in [("auto", "auto"), ("Auto", "auto"), ("25", 25)]],
        *[("pool_fresh_steps", v, e) for v, e in [("auto", "auto"), ("5", 5)]],
    ],
)
def test_count_or_auto_options_take_either(option: str, value: str, expected: object) -> None:
    from erasure_core.cli import _config_from_args, build_parser

    flag = "--" + option.replace("_", "-")
    args = build_parser().parse_args(["erase", "--model", "m", "--erase", "cat", "--method", "eap", flag, value])
    assert getattr(_config_from_args(args), option) == expected


def test_pool_refreshes_other_words_exit_2(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["erase", "--model", "m", "--erase", "cat", "--pool-refreshes", "often"])
    assert exit_.value.code == 2 and "pool-refreshes" in capsys.readouterr().err


def test_a_cuda_device_the_machine_lacks_is_a_clear_message(
    model: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert _erase(model, tmp_path, "--device", "cuda") == 2
    assert "no CUDA device" in capsys.readouterr().err and not list(tmp_path.iterdir())
    assert _erase(model, tmp_path, "--device", "gpu0") == 2
    assert "not a torch device" in capsys.readouterr().err


def test_progress_shows_each_step_once_where_output_is_not_a_terminal(
    model: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert _erase(model, tmp_path, "--method", "esd", "--no-until-erased") == 0
    err = capsys.readouterr().err  # not a terminal: tqdm writes every refresh
    frames = [f for f in err.replace("\n", "\r").split("\r") if f.startswith("erasing:")]
    for step in (1, 2, 3):
        assert sum(f" {step}/3 " in f for f in frames) == 1, frames


def test_ctrl_c_mid_run_exits_130_and_writes_nothing(model: Path, tmp_path: Path) -> None:
    out = tmp_path / "cat.safetensors"
    command = [sys.executable, "-m", "erasure_core", "erase", "--model", str(model), "--erase", "cat"]
    command += ["--steps", "100000", "--no-until-erased", "--ddim-steps", "5", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env, cwd=Path(__file__).parents[2])
    assert process.stderr is not None
    seen = ""
    while " 3/100000 " not in seen:  # training is under way
        char = process.stderr.read(1)
        assert char, f"the run ended before training started: {seen[-2000:]}"
        seen += char
    process.send_signal(signal.SIGINT)
    try:
        rest = process.communicate(timeout=20)[1]
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail("Ctrl-C did not stop the run")
    assert process.returncode == 130 and "cancelled: the model was not changed" in rest
    assert list(tmp_path.iterdir()) == [], "a cancelled run wrote files"


def test_save_state_then_resume_continues_the_optimizer(
    model: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert _erase(model, tmp_path, "--method", "esd", "--save-state") == 0
    assert (tmp_path / "cat.erasure-state").is_file()
    capsys.readouterr()
    more = tmp_path / "more"
    more.mkdir()
    assert _erase(model, more, "--method", "esd", "--resume", str(tmp_path / "cat.safetensors")) == 0
    assert "resumed cat (3 steps before this run); optimizer: optimizer state restored" in capsys.readouterr().out
    report = json.loads((more / "report.json").read_text())
    assert report["previous_steps"] == 3 and report["resumed_optimizer"].startswith("optimizer state restored")
    assert not (more / "cat.erasure-state").exists()  # written only when asked for
