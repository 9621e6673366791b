"""Command line: `python -m erasure_core erase ...` (the main job) and `python -m erasure_core audit ...`.

The only engine module that parses arguments, prints or shows tqdm. Every engine setting is an option, generated
from the config dataclasses so defaults and help text are never typed twice.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import typing
from pathlib import Path
from typing import Any

from .attack import ATTACKS, AttackConfig
from .attack import attack as run_attack
from .callbacks import INFO_CONCEPT, INFO_FOUND, INFO_LOSS, INFO_PHASE, Callbacks
from .config import CONFIG_CLASSES, EraseConfig, make_config, method_defaults
from .errors import ConfigError, ErasureError, ModelError
from .files import atomic_write, write_json
from .frontend.settings import attack_config, attack_text
from .frontend.verdict import made_on_scores, transfer_verdict
from .loading import DEMO_MODEL, DTYPES, check_device, default_device, load_model, machine_name, with_demo_recipe
from .lora.export import load_lora
from .monitor import LastErasure
from .preview import write_before_after
from .resume import load_state, save_state
from .trainer import erase, export_lora, run_audit

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
    run.add_argument("--device", default=default_device(), help="torch device")
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
    audit.add_argument("--device", default=default_device())
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
    attack.add_argument("--device", default=default_device())
    attack.add_argument("--dtype", default="fp32", choices=sorted(DTYPES))
    attack.add_argument("--report", help="write the results as JSON here (the soft attack's embedding beside it)")
    bake = sub.add_parser("apply", help="merge an erasure LoRA into a single-file checkpoint, written as a new file")
    bake.add_argument("--model", required=True, help="single-file .safetensors checkpoint (SD1.x, SD2.x, SDXL)")
    bake.add_argument("--lora", required=True, help="erasure LoRA file (.safetensors)")
    bake.add_argument("--strength", type=float, default=1.0, help="LoRA strength to merge at (default: 1)")
    bake.add_argument("--out", required=True, help="the new checkpoint (.safetensors); an existing file is refused")
    batch = sub.add_parser(
        "batch", help="run a job file: many concept sets x many checkpoints, here or on a Ray cluster"
    )
    batch.add_argument("jobs", help="the job file (.toml; see docs/batch.md)")
    batch.add_argument("--output", help="output folder (default: the job file's 'output')")
    batch.add_argument(
        "--ray",
        metavar="ADDRESS",
        help="send each job to a Ray cluster (HOST:PORT or ray://HOST:PORT), or 'auto' to start a local Ray "
        "instance; needs `pip install ray`",
    )
    batch.add_argument("--ray-cpus", type=int, help="CPUs of the local Ray instance --ray auto starts (default: all)")
    batch.add_argument("--dry-run", action="store_true", help="check the job file and list the jobs; run nothing")
    tiny = sub.add_parser(
        "make-tiny-model", help="write a tiny random SD-shaped model to try the tool without weights"
    )
    tiny.add_argument("--out", required=True, help="folder to write (a diffusers model folder)")
    tiny.add_argument("--arch", default="sd1", choices=["sd1", "sdxl"])
    tiny.add_argument("--seed", type=int, default=0)
    return parser


def _load_backend(args: argparse.Namespace) -> Any:
    """The backend, with the model's autoencoder as `backend.vae` where there is one (for the preview grid)."""
    return load_model(args.model, args.device, args.dtype, args.config_dir, args.prediction_type)


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
    if args.model == DEMO_MODEL:
        settings = with_demo_recipe(args.method, settings)
    generic = {f.name for cls in CONFIG_CLASSES.values() for f in dataclasses.fields(cls)} - fields - _HAND_WRITTEN
    if stray := sorted(n for n in generic if getattr(args, n, None) is not None):
        raise ConfigError(f"--{stray[0].replace('_', '-')} does not apply to --method {args.method}.")
    if args.vocabulary is not None:
        if "vocabulary" not in fields:
            raise ConfigError(f"--vocabulary applies only to eap and age, not {args.method}.")
        settings["vocabulary"] = _vocabulary(args.vocabulary)
    return make_config(args.method, erase=tuple(args.erase), keep=tuple(args.keep), **settings)


def _progress_callbacks(total: int, desc: str = "erasing", **bar_options: Any) -> tuple[Callbacks, Any]:
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=desc, unit="step", dynamic_ncols=True, **bar_options)
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
        bar.set_description(desc, refresh=False)
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
        report["preview"] = str(write_before_after(backend, result, out.with_suffix(".png")))
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
        report["machine"] = machine_name(args.device)
        write_json(args.report, report)
    return 0


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
        write_json(args.report, {**report.to_dict(), "held": held, "verdict": verdict})
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
        data["machine"] = machine_name(args.device)
        soft = next((a for a in report.attacks if a.embedding is not None), None)
        if soft is not None:
            path = Path(args.report).with_suffix(".soft.safetensors")
            with atomic_write(path) as tmp:
                save_file({"context": soft.embedding.contiguous()}, str(tmp), {"concept": config.concept})
            data["attacks"]["soft"]["embedding_file"] = str(path)
        write_json(args.report, data)
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


class _BatchBars:
    """The batch's progress in the terminal: one bar for the whole batch, one for the job that runs."""

    def __init__(self) -> None:
        self.bar: Any = None
        self.job_bar: Any = None

    def start(self, total: int, finished_before: int) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, initial=finished_before, desc="batch", unit="job", dynamic_ncols=True)

    def job_callbacks(self, job: Any) -> Callbacks:
        callbacks, self.job_bar = _progress_callbacks(job.config.total_steps, job.name, position=1, leave=False)
        return callbacks

    def job_ended(self, job: Any, row: Any) -> None:
        if self.job_bar is not None:
            self.job_bar.close()
            self.job_bar = None
        self.bar.write(f"{job.name}: {row.status}" + (f": {row.error}" if row.error else ""))
        self.bar.update(1)

    def close(self) -> None:
        if self.job_bar is not None:
            self.job_bar.close()
        if self.bar is not None:
            self.bar.close()


def _run_batch(args: argparse.Namespace) -> int:
    from .batch import load_job_file, run_batch
    from .batch.runner import plan_rows
    from .batch.store import OutputFolder
    from .batch.summary import FAILED, FINISHED_BEFORE, SUMMARY_MD

    plan = load_job_file(args.jobs, args.output)
    if args.dry_run:
        rows, _ = plan_rows(plan, OutputFolder(plan.output))
        for row in rows:
            print(f"{row.job}: {'finished before, skipped' if row.status == FINISHED_BEFORE else 'to run'}")
        print(f"{len(rows)} jobs; results would go to {plan.output}")
        return 0
    cluster = None
    if args.ray:
        from .batch.cluster import RayCluster

        cluster = RayCluster(args.ray, args.ray_cpus)
    rows = run_batch(plan, _BatchBars(), cluster)
    failed = [r for r in rows if r.status == FAILED]
    short = [r for r in rows if r.record.get("all_erased") is False]
    print(
        f"{len(rows)} jobs, {len(failed)} failed, {len(short)} with a concept not erased; summary: "
        f"{plan.output / SUMMARY_MD}"
    )
    return 1 if failed else 0


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
        if args.command == "batch":
            return _run_batch(args)
        if getattr(args, "device", None) is not None:
            check_device(args.device)
        if args.command == "attack":
            return _run_attack(args)
        return _run_erase(args) if args.command == "erase" else _run_audit(args)
    except ErasureError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if args.command == "batch":
            print(
                "cancelled: finished jobs are kept and the running one left nothing; run the batch again to go on",
                file=sys.stderr,
            )
        else:
            print("cancelled: the model was not changed and no LoRA was written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
