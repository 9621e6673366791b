"""The batch job file: checkpoints × concept sets, and what to produce for each pair.

Read and checked as a whole before any job starts (`load_job_file`), so a typo in the last concept set never costs
the first checkpoint's training: every error names the file, the table and the key, and says what to fix.
TOML, because Python reads it without a dependency and it allows comments. The format is in docs/batch.md.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from ..config import EraseConfig, make_config
from ..errors import ConfigError, ErasureError
from ..loading import DEMO_MODEL as DEMO
from ..loading import DTYPES, with_demo_recipe

SINGLE_FILE_SUFFIXES = (".safetensors",)
PREDICTION_TYPES = ("epsilon", "v_prediction")


@dataclass(frozen=True)
class Outputs:
    """What a job writes besides the LoRA (always written: everything else is made from it)."""

    audit: bool = True  # the final audit (audit.json); the summary's erasure and drift columns come from it
    preview: bool = False  # before/after grid (preview.png); needs a model with an autoencoder
    apply: bool = False  # the LoRA merged into the checkpoint (erased.safetensors); single-file checkpoints only
    apply_strength: float = 1.0
    attack: bool = False  # the recovery-attack audit of each erased concept (attack.json)
    attack_budget: float = 120.0  # seconds per erased concept


@dataclass(frozen=True)
class Checkpoint:
    name: str  # the output folder's name
    path: str  # "demo", a diffusers folder or a single .safetensors file
    config_dir: str | None = None  # for single files: a diffusers folder of the same architecture
    prediction_type: str | None = None

    @property
    def single_file(self) -> bool:
        return self.path != DEMO and Path(self.path).suffix in SINGLE_FILE_SUFFIXES


@dataclass(frozen=True)
class ConceptSet:
    name: str
    method: str
    settings: Mapping[str, Any]  # every config field the file set, erase and keep included


@dataclass(frozen=True)
class Job:
    """One checkpoint × one concept set, with everything that decides its results resolved."""

    checkpoint: Checkpoint
    concepts: ConceptSet
    config: EraseConfig  # the demo's shorter recipe applied where the checkpoint is the demo model
    outputs: Outputs
    dtype: str

    @property
    def name(self) -> str:
        return f"{self.checkpoint.name}/{self.concepts.name}"


@dataclass(frozen=True)
class BatchPlan:
    source: Path  # the job file
    output: Path
    jobs: tuple[Job, ...]
    device: str = "auto"
    retries: int = 2  # on a cluster: how often a job whose worker was lost is started again elsewhere


_TOP_KEYS = {"output", "device", "dtype", "retries", "outputs", "checkpoints", "concepts"}
_CHECKPOINT_KEYS = {"name", "path", "config_dir", "prediction_type", "outputs"}
_CONCEPT_KEYS = {"name", "method", "checkpoints", "outputs"}  # and every setting of the method
_OUTPUT_KEYS = {f.name for f in fields(Outputs)}


def _toml() -> Any:
    if sys.version_info >= (3, 11):
        import tomllib

        return tomllib
    try:
        import tomli
    except ImportError:
        raise ConfigError("Reading a job file on Python 3.10 needs tomli: `pip install tomli`.") from None
    return tomli


def slug(name: str) -> str:
    """A folder name every file system takes: letters, digits, '.', '_' and '-'; the rest become '-'."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "unnamed"


def _unknown(table: Mapping[str, Any], known: set[str], where: str) -> None:
    if unknown := sorted(set(table) - known):
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}; the keys it takes are {', '.join(sorted(known))}.")


def _typed(value: Any, kind: type | tuple[type, ...], what: str) -> Any:
    if isinstance(value, bool) and kind is not bool:
        raise ConfigError(f"{what} must be a {getattr(kind, '__name__', 'number')}, not {value!r}.")
    if not isinstance(value, kind):
        name = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise ConfigError(f"{what} must be a {name}, not {value!r}.")
    return value


def _outputs(base: Outputs, table: Any, where: str) -> Outputs:
    if table is None:
        return base
    _typed(table, dict, f"{where}: 'outputs'")
    _unknown(table, _OUTPUT_KEYS, f"{where} outputs")
    changes = {}
    for key, value in table.items():
        what = f"{where} outputs.{key}"
        is_switch = isinstance(getattr(base, key), bool)
        changes[key] = _typed(value, bool, what) if is_switch else float(_typed(value, (int, float), what))
    out = replace(base, **changes)
    if out.attack_budget <= 0:
        raise ConfigError(f"{where} outputs.attack_budget must be above 0 seconds, got {out.attack_budget:g}.")
    if out.apply_strength <= 0:
        raise ConfigError(f"{where} outputs.apply_strength must be above 0, got {out.apply_strength:g}.")
    return out


def _resolve_path(value: str, base: Path) -> str:
    if value == DEMO:
        return DEMO
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else (base / path).resolve())


def _checkpoint(table: Any, index: int, base: Path) -> tuple[Checkpoint, Any]:
    where = f"[[checkpoints]] #{index + 1}"
    _typed(table, dict, where)
    _unknown(table, _CHECKPOINT_KEYS, where)
    if "path" not in table:
        raise ConfigError(f"{where}: 'path' is missing: a diffusers folder, a .safetensors checkpoint or 'demo'.")
    path = _resolve_path(_typed(table["path"], str, f"{where} path"), base)
    name = slug(_typed(table.get("name", Path(path).stem if path != DEMO else DEMO), str, f"{where} name"))
    where = f"{where} ({name!r})"
    prediction = table.get("prediction_type")
    if prediction is not None and prediction not in PREDICTION_TYPES:
        raise ConfigError(f"{where}: prediction_type must be one of {', '.join(PREDICTION_TYPES)}.")
    config_dir = table.get("config_dir")
    if config_dir is not None:
        config_dir = _resolve_path(_typed(config_dir, str, f"{where} config_dir"), base)
        if not Path(config_dir).is_dir():
            raise ConfigError(f"{where}: config_dir {config_dir} is not a folder.")
    checkpoint = Checkpoint(name, path, config_dir, prediction)
    if path != DEMO and not Path(path).exists():
        raise ConfigError(f"{where}: the checkpoint {path} does not exist.")
    if path != DEMO and Path(path).is_file() and not checkpoint.single_file:
        raise ConfigError(
            f"{where}: {Path(path).name} is not a .safetensors file; give a .safetensors checkpoint or a diffusers "
            "folder (pickled .ckpt files are never loaded)."
        )
    if path != DEMO and Path(path).is_dir() and not (Path(path) / "model_index.json").is_file():
        raise ConfigError(f"{where}: {path} is a folder without model_index.json, so not a diffusers model folder.")
    return checkpoint, table.get("outputs")


def _concept_set(table: Any, index: int) -> tuple[ConceptSet, Any, Any]:
    where = f"[[concepts]] #{index + 1}"
    _typed(table, dict, where)
    method = _typed(table.get("method", "eap"), str, f"{where} method")
    name = slug(_typed(table.get("name", "-".join(table.get("erase") or ["set"])), str, f"{where} name"))
    where = f"{where} ({name!r})"
    settings = {k: tuple(v) if isinstance(v, list) else v for k, v in table.items() if k not in _CONCEPT_KEYS}
    if not settings.get("erase"):
        raise ConfigError(f"{where}: 'erase' is empty; list the concepts to erase, e.g. erase = [\"apple\"].")
    try:
        make_config(method, **settings)  # checks the method, every setting's name, type and range
    except ErasureError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    only = table.get("checkpoints")
    if only is not None:
        only = [slug(_typed(n, str, f"{where} checkpoints")) for n in _typed(only, list, f"{where} checkpoints")]
    return ConceptSet(name, method, settings), table.get("outputs"), only


def job_config(checkpoint: Checkpoint, concepts: ConceptSet, outputs: Outputs) -> EraseConfig:
    """The concept set's config on this checkpoint: the demo model's shorter recipe unless the file set a value (as
    `erase --model demo` does), and no audit where the job asks for none."""
    settings = dict(concepts.settings)
    if checkpoint.path == DEMO:
        settings = with_demo_recipe(concepts.method, settings)
    if not outputs.audit:
        settings["audit_samples"] = 0
    return make_config(concepts.method, **settings)


def load_job_file(path: str | Path, output: str | Path | None = None) -> BatchPlan:
    """Read and check a job file; `output` overrides the file's output folder. Nothing is written."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"Job file not found: {path}.")
    toml = _toml()
    try:
        data = toml.loads(path.read_text(encoding="utf-8"))
    except toml.TOMLDecodeError as exc:
        raise ConfigError(f"{path.name} is not valid TOML: {exc}.") from None
    where = path.name
    _unknown(data, _TOP_KEYS, where)
    base = path.resolve().parent
    out = Path(output) if output is not None else base / _typed(data.get("output", "batch-out"), str, "output")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"The output folder {out} is a file; choose another 'output'.")
    dtype = _typed(data.get("dtype", "fp32"), str, "dtype")
    if dtype not in DTYPES:
        raise ConfigError(f"{where}: dtype must be one of {', '.join(DTYPES)}, not {dtype!r}.")
    device = _typed(data.get("device", "auto"), str, "device")
    retries = _typed(data.get("retries", 2), int, "retries")
    if retries < 0:
        raise ConfigError(f"{where}: retries must be 0 or more.")
    outputs = _outputs(Outputs(), data.get("outputs"), where)
    checkpoints = [
        _checkpoint(t, i, base) for i, t in enumerate(_typed(data.get("checkpoints", []), list, "checkpoints"))
    ]
    concepts = [_concept_set(t, i) for i, t in enumerate(_typed(data.get("concepts", []), list, "concepts"))]
    if not checkpoints or not concepts:
        raise ConfigError(
            f"{where} needs at least one [[checkpoints]] table (path = ...) and one [[concepts]] table (erase = [...])."
        )
    for kind, names in (
        ("checkpoints", [c.name for c, _ in checkpoints]),
        ("concepts", [c.name for c, _, _ in concepts]),
    ):
        if dupes := sorted({n for n in names if names.count(n) > 1}):
            raise ConfigError(
                f"{where}: two [[{kind}]] are named {dupes[0]!r}, so two jobs would write the same output folder; "
                "give each a distinct 'name'."
            )
    known = {c.name for c, _ in checkpoints}
    for concept_set, _, only in concepts:
        if only is not None and (missing := sorted(set(only) - known)):
            raise ConfigError(
                f"[[concepts]] {concept_set.name!r}: checkpoints names {missing[0]!r}, which no [[checkpoints]] is "
                f"named; the names are {', '.join(sorted(known))}."
            )
    jobs = []  # checkpoint by checkpoint, so that each model loads once
    for checkpoint, checkpoint_outputs in checkpoints:
        for concept_set, concept_outputs, only in concepts:
            if only is not None and checkpoint.name not in only:
                continue
            pair = f"{checkpoint.name} x {concept_set.name}"
            job_outputs = _outputs(_outputs(outputs, checkpoint_outputs, pair), concept_outputs, pair)
            if job_outputs.apply and not checkpoint.single_file:
                raise ConfigError(
                    f"{pair}: outputs.apply merges the LoRA into a single-file checkpoint, and {checkpoint.path} is "
                    "not one; set apply = false for it (in its [[checkpoints]] outputs)."
                )
            config = job_config(checkpoint, concept_set, job_outputs)
            jobs.append(Job(checkpoint, concept_set, config, job_outputs, dtype))
    return BatchPlan(path, out, tuple(jobs), device, retries)
