"""Command line: `python -m erasure_core erase ...` (the main job) and `python -m erasure_core audit ...`.

The only engine module that parses arguments, prints or shows tqdm. Every engine setting is an option, generated
from the config dataclasses so defaults and help text are never typed twice.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import platform
import sys
import typing
from pathlib import Path
from typing import Any

import torch

from . import jsonsafe
from .attack import ATTACKS, AttackConfig
from .attack import attack as run_attack
from .callbacks import INFO_CONCEPT, INFO_FOUND, INFO_LOSS, INFO_PHASE, Callbacks
from .config import CONFIG_CLASSES, EraseConfig, is_closed_form, make_config, method_defaults
from .defaults import DEMO_OVERRIDES
from .demo import load_demo
from .errors import ConfigError, ErasureError, ModelError
from .files import atomic_write
from .frontend.settings import attack_config, attack_text
from .frontend.verdict import made_on_scores, transfer_verdict
from .lora.export import load_lora
from .monitor import LastErasure
from .resume import load_state, save_state
from .trainer import erase, export_lora, run_audit

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
DEMO_MODEL = "demo"
# Options written by hand below rather than generated from config fields.
_HAND_WRITTEN = {"erase", "keep", "vocabulary"}


def _scalar_type(hint: Any) -> type:
    """`int` for `int | None` and so on."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if args else hint


def _add_config_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("method settings (defaults depend on --method; see `erase --defaults`)")
    seen: set[str] = set()
    for cls in CONFIG_CLASSES.values():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.name in seen or f.name in _HAND_WRITTEN:
                continue
            seen.add(f.name)
            kind = _scalar_type(hints[f.name])
            flag = "--" + f.name.replace("_", "-")
            kwargs: dict[str, Any] = {"dest": f.name, "default": None, "help": f.metadata.get("help", "")}
            if kind is bool:
                kwargs["action"] = argparse.BooleanOptionalAction
            else:
                kwargs["type"] = f.metadata.get("parse", kind)
                if "choices" in f.metadata:
                    kwargs["choices"] = f.metadata["choices"]
            group.add_argument(flag, **kwargs)


def _add_model_format_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config-dir",
        help="for single files: a local diffusers folder of the same architecture to take configs and tokenizers "
        "from (default: the ones this package ships for SD1.x, SD2.x and SDXL)",
    )
    parser.add_argument(
        "--prediction-type",
        choices=("epsilon", "v_prediction"),
        help="what the model predicts, where its files do not say it right (default: the scheduler's; for single "
        "files epsilon, but v_prediction for SD2.x 768 and for checkpoints marked v_pred)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m erasure_core", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("erase", help="erase concepts and write a LoRA")
    run.add_argument("--model", help="diffusers folder, single-file .safetensors checkpoint, or 'demo' (required)")
    _add_model_format_options(run)
    run.add_argument("--erase", action="append", default=[], help="concept to erase (repeat for several)")
    run.add_argument("--keep", action="append", default=[], help="concept to keep unchanged (repeat for several)")
    run.add_argument("--method", default="eap", choices=sorted(CONFIG_CLASSES), help="erasure method (default: eap)")
    run.add_argument(
        "--vocabulary", help="EAP/AGE candidate words: a text file (one per line) or comma-separated words"
    )
    run.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="torch device")
    run.add_argument(
        "--dtype", default="fp32", choices=sorted(DTYPES), help="model precision (LoRA weights stay fp32)"
    )
    run.add_argument(
        "--resume",
        help="continue training from a LoRA file made on the same model with the same method, concepts and layers "
        "(with its optimizer state if --save-state wrote one beside it)",
    )
    run.add_argument(
        "--save-state",
        action="store_true",
        help="also write the optimizer state beside the LoRA (NAME.erasure-state), so a later --resume continues "
        "exactly where this run stopped",
    )
    run.add_argument("--out", help="output LoRA file (.safetensors) (required)")
    run.add_argument("--report", help="write everything about the run as JSON here")
    run.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    run.add_argument("--defaults", action="store_true", help="print the method's default settings and exit")
    run.add_argument(
        "--preview",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="write a before/after image grid next to the LoRA (default: on for the demo model)",
    )
    _add_config_options(run)

    audit = sub.add_parser("audit", help="audit an existing erasure LoRA on a model")
    audit.add_argument("--model", required=True)
    _add_model_format_options(audit)
    audit.add_argument("--lora", required=True, help="LoRA file to audit")
    audit.add_argument("--prompt", action="append", default=[], help="extra prompt to check for side effects")
    audit.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    audit.add_argument("--dtype", default="fp32", choices=sorted(DTYPES))
    audit.add_argument("--samples", type=int, default=2, help="latents per prompt")
    audit.add_argument("--report", help="write the audit as JSON here")
    attack = sub.add_parser("attack", help="try to bring an erased concept back (recovery-attack audit)")
    attack.add_argument("--model", required=True)
    _add_model_format_options(attack)
    attack.add_argument("--lora", required=True, help="erasure LoRA file to attack")
    attack.add_argument("--concept", help="the erased concept to bring back (default: the LoRA's, if it erased one)")
    attack.add_argument("--budget", type=float, default=AttackConfig.budget_s, help="seconds for the whole audit")
    attack.add_argument("--attacks", default=",".join(ATTACKS), help=f"comma-separated: {', '.join(ATTACKS)}")
    attack.add_argument("--samples", type=int, default=AttackConfig.samples, help="latents the attacks fit on")
    attack.add_argument("--held-out", type=int, default=AttackConfig.held_out, help="latents they are judged on")
    attack.add_argument("--seed", type=int, default=AttackConfig.seed)
    attack.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    attack.add_argument("--dtype", default="fp32", choices=sorted(DTYPES))
    attack.add_argument("--report", help="write the results as JSON here (the soft attack's embedding beside it)")
    bake = sub.add_parser("apply", help="merge an erasure LoRA into a single-file checkpoint, written as a new file")
    bake.add_argument("--model", required=True, help="single-file .safetensors checkpoint (SD1.x, SD2.x, SDXL)")
    bake.add_argument("--lora", required=True, help="erasure LoRA file (.safetensors)")
    bake.add_argument("--strength", type=float, default=1.0, help="LoRA strength to merge at (default: 1)")
    bake.add_argument("--out", required=True, help="the new checkpoint (.safetensors); an existing file is refused")
    tiny = sub.add_parser(
        "make-tiny-model", help="write a tiny random SD-shaped model to try the tool without weights"
    )
    tiny.add_argument("--out", required=True, help="folder to write (a diffusers model folder)")
    tiny.add_argument("--arch", default="sd1", choices=["sd1", "sdxl"])
    tiny.add_argument("--seed", type=int, default=0)
    return parser


def _check_device(device: str) -> None:
    """A clear message for a device this machine does not have, before anything loads."""
    try:
        kind = torch.device(device).type
    except RuntimeError:
        raise ConfigError(f"--device {device!r} is not a torch device; use cpu, cuda, cuda:1 or mps.") from None
    if kind == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"--device {device}: this machine has no CUDA device torch can use (no NVIDIA GPU, or a CPU-only torch "
            "build); use --device cpu."
        )
    if (
        kind == "cuda"
        and torch.device(device).index is not None
        and torch.device(device).index >= torch.cuda.device_count()
    ):
        raise ConfigError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s).")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"--device {device}: MPS (Apple GPU) is not available here; use --device cpu.")


def _load_backend(args: argparse.Namespace) -> Any:
    """The backend, with the model's autoencoder as `backend.vae` where there is one (for the preview grid)."""
    if args.model == DEMO_MODEL:
        return load_demo(args.device).backend
    from .backends.diffusers_backend import load_diffusers_model

    return load_diffusers_model(args.model, args.device, DTYPES[args.dtype], args.config_dir, args.prediction_type)


def _vocabulary(value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    path = Path(value)
    if path.is_file():
        return tuple(line.strip() for line in path.read_text().splitlines() if line.strip())
    return tuple(w.strip() for w in value.split(",") if w.strip())


def _config_from_args(args: argparse.Namespace) -> EraseConfig:
    fields = {f.name for f in dataclasses.fields(CONFIG_CLASSES[args.method])}
    settings = {name: getattr(args, name) for name in fields - _HAND_WRITTEN if getattr(args, name, None) is not None}
    if args.model == DEMO_MODEL and not is_closed_form(args.method):
        demo = {k: v for k, v in DEMO_OVERRIDES.items() if k in fields}
        settings = {**demo, **settings}  # the demo's shorter recipe, unless the user set a value
    generic = {f.name for cls in CONFIG_CLASSES.values() for f in dataclasses.fields(cls)} - fields - _HAND_WRITTEN
    if stray := sorted(n for n in generic if getattr(args, n, None) is not None):
        raise ConfigError(f"--{stray[0].replace('_', '-')} does not apply to --method {args.method}.")
    if args.vocabulary is not None:
        if "vocabulary" not in fields:
            raise ConfigError(f"--vocabulary applies only to eap and age, not {args.method}.")
        settings["vocabulary"] = _vocabulary(args.vocabulary)
    return make_config(args.method, erase=tuple(args.erase), keep=tuple(args.keep), **settings)


def _write_json(path: str, data: dict[str, Any]) -> None:
    with atomic_write(path) as tmp:
        tmp.write_text(jsonsafe.dumps(data, indent=2, default=str))


def _progress_callbacks(total: int) -> tuple[Callbacks, Any]:
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc="erasing", unit="step", dynamic_ncols=True)
    erasure = LastErasure()

    def on_step(step: int, steps: int, info: dict[str, Any]) -> None:
        # One refresh per call: set_description and set_postfix each print a line of their own where output is not
        # a terminal (a log file, a CI job), which showed every step twice.
        if info.get(INFO_PHASE) == "search":
            bar.set_description("encoding vocabulary")
            return
        if info.get(INFO_PHASE) == "audit":
            bar.set_description("auditing")
            return
        bar.set_description("erasing", refresh=False)
        bar.n = step
        postfix = {"loss": f"{info[INFO_LOSS]:.4g}"} if INFO_LOSS in info else {}
        if INFO_CONCEPT in info:
            postfix["concept"] = info[INFO_CONCEPT]
        if INFO_FOUND in info:
            postfix["found"] = info[INFO_FOUND]
        if measured := erasure.update(info):  # the last measured erasure of each concept (0..1)
            postfix["erasure"] = measured
        bar.set_postfix(postfix, refresh=False)
        bar.refresh()

    return Callbacks(on_step=on_step), bar


def _run_erase(args: argparse.Namespace) -> int:
    if args.defaults:
        print(json.dumps(method_defaults(args.method), indent=2))
        return 0
    if not args.model or not args.out:
        raise ConfigError("Both --model and --out are required: the model to erase from and the LoRA file to write.")
    config = _config_from_args(args)  # checked before the model loads
    out = Path(args.out)
    if out.suffix != ".safetensors":
        raise ConfigError(f"--out must end in .safetensors, got {out.name!r}.")
    if out.exists() and not args.overwrite:
        raise ConfigError(f"{out} already exists; choose another --out or pass --overwrite.")
    resume = load_lora(args.resume) if args.resume else None
    resume_state = load_state(args.resume) if args.resume else None
    backend = _load_backend(args)
    preview = args.preview if args.preview is not None else args.model == DEMO_MODEL
    if preview and getattr(backend, "vae", None) is None:
        raise ConfigError("This model has no autoencoder loaded, so no preview can be drawn; drop --preview.")
    callbacks, bar = _progress_callbacks(config.total_steps)
    try:
        result = erase(backend, config, callbacks, resume=resume, resume_state=resume_state)
    finally:
        bar.close()
    export_lora(result, out)
    if args.save_state:
        save_state(result.training_state, out)
    report = result.report()
    if preview:
        report["preview"] = str(_write_preview(backend, result, out.with_suffix(".png")))
    if result.audit is not None:
        print(result.audit.table())
    if "preview" in report:
        print(f"before/after grid written to {report['preview']}")
    if result.resumed_from:
        print(
            f"resumed {result.resumed_from} ({result.previous_steps} steps before this run); "
            f"optimizer: {result.resumed_optimizer}"
        )
    print(result.stop_reason())
    print(
        f"{config.method}: {result.seconds:.1f} s, peak memory {result.peak_memory_mb:.0f} MB, "
        f"{result.unet_evals} UNet evaluations, LoRA written to {out}"
    )
    if args.report:
        report["output"] = str(out)
        report["machine"] = _machine(args.device)
        _write_json(args.report, report)
    return 0


def _machine(device: str) -> str:
    """Where a report's seconds were measured."""
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(device)
    return f"{platform.machine()} CPU, {os.cpu_count()} cores"


def _write_preview(backend: Any, result: Any, path: Path) -> Path:
    """Before/after grid next to the LoRA: the erased, kept and neighbour concepts, each row labelled with its role;
    the same seeds before and after."""
    from .preview import generate_images, image_grid, preview_rows, row_label

    rows = preview_rows(result.config.erase, result.config.keep, result.neighbours)
    prompts = [prompt for _, prompt in rows]
    seeds = [0, 1, 2]
    grid_prompts = [p for p in prompts for _ in seeds]
    before = generate_images(backend, backend.vae, grid_prompts, seeds * len(prompts))
    after = generate_images(backend, backend.vae, grid_prompts, seeds * len(prompts), lora=result.weights)
    n = len(seeds)
    cells = [[*before[i * n : (i + 1) * n], *after[i * n : (i + 1) * n]] for i in range(len(prompts))]
    columns = [f"before {s}" for s in seeds] + [f"after {s}" for s in seeds]
    with atomic_write(path) as tmp:
        image_grid(cells, [row_label(*row) for row in rows], columns).save(tmp, format="PNG")
    return path


def _run_audit(args: argparse.Namespace) -> int:
    lora = load_lora(args.lora)
    info = lora.info()
    settings = dict(info.get("config") or {})
    if not settings:
        raise ModelError(
            f"{Path(args.lora).name} carries no erasure metadata; only LoRAs made by this tool can be audited."
        )
    # compared with the LoRA's own final audit only when measured the same way (latents per prompt; seed as trained)
    same_measure = settings.get("audit_samples") == args.samples
    settings["audit_samples"] = args.samples
    method = settings.pop("method")
    config = make_config(method, **{k: tuple(v) if isinstance(v, list) else v for k, v in settings.items()})
    backend = _load_backend(args)
    report = run_audit(backend, lora, config, tuple(args.prompt))
    print(report.table())
    reference = made_on_scores(lora) if same_measure else {}
    held, verdict = transfer_verdict(report, config.erased_at, Path(args.model).name, reference)
    print(verdict)
    if args.report:
        _write_json(args.report, {**report.to_dict(), "held": held, "verdict": verdict})
    return 0


def _run_attack(args: argparse.Namespace) -> int:
    from safetensors.torch import save_file

    from .trainer import lora_weights_for

    lora = load_lora(args.lora)
    attacks = tuple(a.strip() for a in args.attacks.split(",") if a.strip())
    config = attack_config(  # checked before the model loads
        lora.metadata, args.concept or "", attacks, args.budget, args.seed, args.samples, args.held_out
    )
    backend = _load_backend(args)
    weights = lora_weights_for(backend, lora)
    report = run_attack(backend, weights, config, on_progress=lambda text: print(text, file=sys.stderr))
    print(attack_text(report))
    if args.report:
        data = {**report.to_dict(), "model": Path(args.model).name, "lora": Path(args.lora).name}
        data["machine"] = _machine(args.device)
        soft = next((a for a in report.attacks if a.embedding is not None), None)
        if soft is not None:
            path = Path(args.report).with_suffix(".soft.safetensors")
            with atomic_write(path) as tmp:
                save_file({"context": soft.embedding.contiguous()}, str(tmp), {"concept": config.concept})
            data["attacks"]["soft"]["embedding_file"] = str(path)
        _write_json(args.report, data)
    return 0


def _run_apply(args: argparse.Namespace) -> int:
    from .checkpoint import ARCH_NAMES, apply_lora_to_checkpoint

    done = apply_lora_to_checkpoint(args.model, args.lora, args.out, args.strength)
    erased = ", ".join(done["erased"]) or "(not recorded)"
    print(
        f"merged {done['layers']} layers ({done['method'] or 'unknown method'}, erasing {erased}) at strength "
        f"{args.strength:g} into the {ARCH_NAMES[done['arch']]} checkpoint {args.out}"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        if args.command == "make-tiny-model":
            from .testing import save_tiny_model

            print(f"tiny random {args.arch} model written to {save_tiny_model(args.out, args.arch, args.seed)}")
            return 0
        if args.command == "apply":
            return _run_apply(args)
        if getattr(args, "device", None) is not None:
            _check_device(args.device)
        if args.command == "attack":
            return _run_attack(args)
        return _run_erase(args) if args.command == "erase" else _run_audit(args)
    except ErasureError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cancelled: the model was not changed and no LoRA was written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
