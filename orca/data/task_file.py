"""Bring your own data: a YAML task file declares a task, with no code.

    name: my-sensor-task            # registered under this name
    description: vibration windows, 3 fault classes
    input: 1d                       # 1d (C, L) | 2d (C, H, W) | tabular (F features)
    output: classification          # classification | multilabel | regression | dense1d | dense2d
    metric: error_rate              # see `orca tasks`; must fit the output kind
    loss: cross_entropy             # optional; default by output kind
    num_outputs: 3                  # optional for classification: max label + 1
    backbone: minilm-l6             # optional default body
    max_seq_len: 64                 # optional: token budget of the embedder
    preset: paper                   # optional: settings (orca.presets) under align/refine
    splits:                         # paths relative to this file
      train: data/train.npz         # NPZ with X and y, Parquet, or Arrow
      validation: data/val.npz      # optional: carved from train when absent
      test: data/test.npz
    align: {epochs: 10}             # optional AlignConfig fields
    refine: {epochs: 10, lr: 1e-4}  # optional RefineConfig fields

Input arrays may drop the channel axis: (N, L) for 1d, (N, H, W) for 2d, (N, F) for
tabular gain a channel of 1. Regression targets (N,) become (N, 1); dense targets without
an output axis gain one.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from orca.config.base import Config, check_choice, check_number
from orca.config.stages import AlignConfig, RefineConfig
from orca.data.tasks import MODALITIES, OUTPUT_KINDS, TASKS, RawTask, TaskSpec, task_names
from orca.fingerprint import fingerprint_file, fingerprint_json
from orca.presets import DEFAULT_PRESET, PRESETS, apply_preset
from orca.registry import Registry

# task file -> (stat signature of it and its split files, the spec read from them)
_READ: dict[Path, tuple[tuple, TaskSpec]] = {}

DEFAULT_LOSS = {
    "classification": "cross_entropy",
    "multilabel": "bce",
    "regression": "mse",
    "dense1d": "mse",
    "dense2d": "mse",
}
# input kind -> number of axes of one example, channel included
EXAMPLE_AXES = {"1d": 2, "2d": 3, "tabular": 2}

SPLIT_READERS: Registry[Callable[[Path], tuple[np.ndarray, np.ndarray]]] = Registry(
    "split file format"
)


@SPLIT_READERS.register(".npz")
def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        missing = [key for key in ("X", "y") if key not in data.files]
        if missing:
            raise ValueError(f"{path}: missing array(s) {missing}; found {sorted(data.files)}")
        return data["X"], data["y"]


@SPLIT_READERS.register(".parquet")
def _read_parquet(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A `y` column and either an `x` list column or one numeric column per feature."""
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    if "y" not in table.column_names:
        raise ValueError(f"{path}: no column 'y'; found {table.column_names}")
    y = np.asarray(table.column("y").to_pylist())
    if "x" in table.column_names:
        x = np.asarray(table.column("x").to_pylist(), dtype=np.float32)
    else:
        features = [name for name in table.column_names if name != "y"]
        x = np.stack([table.column(n).to_numpy(zero_copy_only=False) for n in features], axis=1)
    return x, y


def _read_arrow(path: Path) -> tuple[np.ndarray, np.ndarray]:
    from orca.data.arrow_io import read_split

    split = read_split(path)
    return split.x, split.y


SPLIT_READERS.register(".arrow", _read_arrow)


def check_inside(task_file: Path, splits: dict[str, str]) -> None:
    """Raise naming the split whose path leaves the task file's folder (absolute, or
    climbing out with `..`); symbolic links in the folder are not followed here."""
    folder = task_file.parent
    for split, given in splits.items():
        normal = Path(os.path.normpath(folder / given))
        if not normal.is_relative_to(folder):
            raise ValueError(
                f"{task_file}: splits.{split}: {given!r} is outside the task file's folder "
                f"{folder}; move the file into it, or pass --allow-outside to read it there"
            )


def check_split_file(path: Path, task_file: Path, split: str) -> None:
    """Raise naming the task file and split unless `path` exists in a readable format."""
    if not path.is_file():
        raise FileNotFoundError(f"{task_file}: splits.{split}: file {path} does not exist")
    if path.suffix not in SPLIT_READERS:
        raise ValueError(
            f"{task_file}: splits.{split}: {path.name} has format {path.suffix!r}; "
            f"valid formats: {', '.join(SPLIT_READERS.names())}"
        )


# What a readable split file of each format holds, for the error on an unreadable one.
SPLIT_FORMATS = {
    ".npz": "a numpy.savez archive of arrays X and y (no pickled objects)",
    ".parquet": "a Parquet table with a 'y' column and an 'x' list column of equal-length "
    "rows or one numeric column per feature",
    ".arrow": "an Arrow IPC split written by orca (orca.data.arrow_io.write_split)",
}


def read_split_file(path: Path, task_file: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Read one split file; any failure raises ValueError naming the task file, the split
    and the file, and saying what the format should hold."""
    check_split_file(path, task_file, split)
    try:
        return SPLIT_READERS.get(path.suffix)(path)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        if str(err).startswith(f"{path}: "):  # the reader's own error names the file
            raise ValueError(f"{task_file}: splits.{split}: {err}") from err
        expected = SPLIT_FORMATS.get(path.suffix, f"a {path.suffix} file")
        raise ValueError(
            f"{task_file}: splits.{split}: {path}: unreadable ({type(err).__name__}: {err}); "
            f"expected {expected}"
        ) from err


@dataclass(frozen=True)
class TaskFile(Config):
    """The validated content of a task file."""

    name: str
    input: str  # a name in orca.data.tasks.MODALITIES
    output: str  # a name in orca.data.tasks.OUTPUT_KINDS
    metric: str
    splits: dict[str, str]
    description: str = ""
    loss: str | None = None
    num_outputs: int | None = None
    backbone: str = "minilm-l6"
    max_seq_len: int = 64
    validation_fraction: float = 0.2
    align: dict[str, Any] = field(default_factory=dict)
    refine: dict[str, Any] = field(default_factory=dict)
    preset: str = DEFAULT_PRESET  # orca.presets: applied under `align` and `refine`

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError(f"name={self.name!r} must be a non-empty string")
        check_choice("input", self.input, MODALITIES)
        check_choice("output", self.output, OUTPUT_KINDS)
        if not isinstance(self.splits, dict):
            raise ValueError(f"splits must be a mapping of split name to path, got {self.splits!r}")
        for section, kind in (("align", "AlignConfig"), ("refine", "RefineConfig")):
            value = getattr(self, section)
            if not isinstance(value, dict):
                raise ValueError(
                    f"{section} must be a mapping of {kind} fields (e.g. {{epochs: 10}}), "
                    f"got {value!r}"
                )
        for split in self.splits:
            check_choice("splits", split, ("train", "validation", "test"))
        for required in ("train", "test"):
            if required not in self.splits:
                raise ValueError(f"splits.{required} is required (a path to its data file)")
        if self.num_outputs is not None:
            check_number("num_outputs", self.num_outputs, minimum=1, integer=True)
        check_number("max_seq_len", self.max_seq_len, minimum=1, integer=True)
        PRESETS.check(self.preset, field="preset")


def _with_channel(x: np.ndarray, kind: str, where: str) -> np.ndarray:
    axes = EXAMPLE_AXES[kind]
    if x.ndim == axes:  # no channel axis: add one
        return x[:, None]
    if x.ndim != axes + 1:
        raise ValueError(
            f"{where}: {kind} inputs must be {axes}- or {axes + 1}-D arrays (N first), "
            f"got shape {x.shape}"
        )
    return x


def _shape_targets(y: np.ndarray, output: str, x: np.ndarray) -> np.ndarray:
    if output == "regression" and y.ndim == 1:
        return y[:, None].astype(np.float32)
    if output in ("dense1d", "dense2d") and y.ndim == x.ndim - 1:
        return y[:, None].astype(np.float32)
    if output == "classification":
        return y
    return y.astype(np.float32)


def read_task_file(path: str | Path, *, allow_outside: bool = False) -> TaskSpec:
    """Read and validate the task a YAML file declares; return its spec. Registers nothing
    (`load_task_file` does).

    Split files must lie inside the task file's folder (a relative path without `..`; a
    symbolic link placed in the folder counts as inside), unless `allow_outside` (the
    command line's `--allow-outside`): a task file handed around must not read whatever
    files it names. A file read before and unchanged, with its split files (same sizes and
    modification times), is not read and fingerprinted again: its earlier spec is returned
    (a sweep builds one config per method and seed from the same task file).
    """
    path, declared, files = _check_task_file(path, allow_outside)
    signature = tuple(
        (str(f), f.stat().st_mtime_ns, f.stat().st_size) for f in (path, *files.values())
    )
    cached = _READ.get(path)
    if cached is not None and cached[0] == signature:
        return cached[1]
    spec = _read_spec(path, declared, files)
    _READ[path] = (signature, spec)
    return spec


def load_task_file(path: str | Path, *, allow_outside: bool = False) -> TaskSpec:
    """`read_task_file`, then register the task in orca.data.tasks.TASKS; return its spec.

    Registering the same file again replaces its earlier registration (when the file or its
    data changed); a name that belongs to another task raises."""
    spec = read_task_file(path, allow_outside=allow_outside)
    if not _still_registered(spec):
        _register(spec)
    return spec


def check_task_name_free(spec: TaskSpec) -> None:
    """Raise unless `spec`'s name is free or already belongs to the same task file."""
    if spec.name in task_names():  # built-in tasks included, which register on first lookup
        existing = TASKS.get(spec.name)
        if existing.source_file != spec.source_file:
            where = existing.source_file or "a built-in task"
            raise ValueError(
                f"{spec.source_file}: task name {spec.name!r} is already taken by {where}"
            )


def _check_task_file(
    path: str | Path, allow_outside: bool
) -> tuple[Path, TaskFile, dict[str, Path]]:
    """The resolved path, its validated content and its split files (checked to exist, in a
    readable format, and inside the folder unless `allow_outside`)."""
    import yaml

    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise FileNotFoundError(f"task file {path} does not exist")
    try:
        content = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML ({err})") from err
    if content is None:
        raise ValueError(
            f"{path}: the file is empty; expected a mapping of task fields "
            "(name, input, output, metric, splits)"
        )
    if not isinstance(content, dict):
        raise ValueError(f"{path}: expected a mapping of task fields, got {type(content).__name__}")
    try:
        declared = TaskFile.from_dict(content)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: {err}") from err
    files = {split: (path.parent / p).resolve() for split, p in declared.splits.items()}
    if not allow_outside:
        check_inside(path, declared.splits)
    for split, file in files.items():
        check_split_file(file, path, split)
    return path, declared, files


def _read_spec(path: Path, declared: TaskFile, files: dict[str, Path]) -> TaskSpec:
    """The task's spec: train is read now (shapes, outputs); the loader reads the rest."""

    def read(split: str) -> tuple[np.ndarray, np.ndarray]:
        x, y = read_split_file(files[split], path, split)
        x = _with_channel(np.asarray(x), declared.input, f"{files[split]} [{split}]")
        return x, _shape_targets(np.asarray(y), declared.output, x)

    x_train, y_train = read("train")

    def loader() -> RawTask:
        x_val, y_val = read("validation") if "validation" in files else (None, None)
        x_test, y_test = read("test")
        return RawTask(
            x_train=x_train,
            y_train=y_train,
            x_test=x_test,
            y_test=y_test,
            x_val=x_val,
            y_val=y_val,
            source=str(path),
            version=data_version,
        )

    data_version = fingerprint_json(
        {"file": path.read_text(), **{s: fingerprint_file(f) for s, f in files.items()}}
    )
    num_outputs = declared.num_outputs or _infer_outputs(declared.output, y_train, path)
    given = {"align": declared.align, "refine": declared.refine}
    sections = apply_preset(declared.preset, declared.name, {}, given)  # the file's own win
    try:
        return TaskSpec(
            name=declared.name,
            description=declared.description or f"task file {path.name}",
            modality=declared.input,
            input_shape=tuple(x_train.shape[1:]),
            output=declared.output,
            num_outputs=num_outputs,
            loss=declared.loss or DEFAULT_LOSS[declared.output],
            metric=declared.metric,
            loader=loader,
            default_backbone=declared.backbone,
            max_seq_len=declared.max_seq_len,
            validation_fraction=declared.validation_fraction,
            align=AlignConfig.from_dict(sections.get("align", {})),
            refine=RefineConfig.from_dict(sections.get("refine", {})),
            source_file=str(path),
            data_version=data_version,
            preset=declared.preset,
        )
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from err


def _still_registered(spec: TaskSpec) -> bool:
    return spec.name in TASKS and TASKS.get(spec.name) is spec


def _infer_outputs(output: str, y: np.ndarray, path: Path) -> int:
    if output == "classification":
        if y.size == 0:
            raise ValueError(f"{path}: splits.train: the split is empty")
        numeric = np.issubdtype(y.dtype, np.number)
        bad = np.size(y) - np.count_nonzero(np.isfinite(y)) if numeric else 0
        if not numeric or bad or not np.all(np.mod(y, 1) == 0):
            found = f"{bad} NaN or inf values" if bad else f"dtype {y.dtype}"
            raise ValueError(
                f"{path}: splits.train: class labels must be whole numbers 0..K-1, found "
                f"{found}; cannot infer num_outputs"
            )
        return int(np.max(y)) + 1
    if y.ndim < 2:
        raise ValueError(f"{path}: cannot infer num_outputs from targets of shape {y.shape}")
    return int(y.shape[1])


def _register(spec: TaskSpec) -> None:
    check_task_name_free(spec)
    if spec.name in TASKS:  # an earlier registration of the same file
        TASKS.unregister(spec.name)
    TASKS.register(spec.name, spec)
