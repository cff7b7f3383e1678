"""The task registry: what each task is (shapes, loss, metric, defaults) and how to load it."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from orca.config.base import check_choice, check_number
from orca.config.stages import AlignConfig, RefineConfig
from orca.metrics import LOSSES, METRICS
from orca.metrics_context import check_context
from orca.presets import DEFAULT_PRESET, PRESETS
from orca.registry import Registry

MODALITIES = ("1d", "2d", "tabular")
_DENSE = (
    ("mse", "l1", "relative_l2", "bce", "cross_entropy"),
    (
        "relative_l2",
        "nrmse",
        "mae",
        "one_minus_r2",
        "mae8",
        "one_minus_auroc_pixelwise",
        "psicov_mae8",
        "cosmic_one_minus_auroc",
    ),
)
# output kind -> (losses, metrics) whose shape conventions fit its predictions and targets
OUTPUT_CONTRACTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "classification": (
        ("cross_entropy",),
        ("error_rate", "one_minus_auroc", "one_minus_macro_f1"),
    ),
    "multilabel": (
        ("bce",),
        ("one_minus_auroc_multilabel", "one_minus_map", "one_minus_map_per_clip"),
    ),
    "regression": (("mse", "l1", "relative_l2"), ("mae", "one_minus_r2", "relative_l2", "nrmse")),
    "dense1d": _DENSE,
    "dense2d": _DENSE,
}
OUTPUT_KINDS = tuple(OUTPUT_CONTRACTS)  # every output kind has a contract


@dataclass(frozen=True)
class RawTask:
    """A task's data as its source provides it: train and test sets, a validation set when
    the source publishes one (otherwise ingest carves it from train), and provenance.

    `context` holds the per-example arrays that some metrics need besides predictions and
    targets (orca.metrics_context): split name ("train", "validation", "test") -> field ->
    one row per example of that split. Checked on creation (known fields, one row per
    example, integer indices or 0/1 masks) and kept as int64 / uint8 arrays; ingest carries
    each row's context with it into the split files (orca.data.arrow_io).
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str
    version: str
    label_names: tuple[str, ...] = ()
    x_val: np.ndarray | None = None
    y_val: np.ndarray | None = None
    context: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        rows = {"train": len(self.y_train), "test": len(self.y_test)}
        if self.y_val is not None:
            rows["validation"] = len(self.y_val)
        checked = {}
        for split, arrays in self.context.items():
            if split not in rows:
                raise ValueError(
                    f"{self.source}: context for split {split!r}, which this task does not "
                    f"have; expected one of {sorted(rows)}"
                )
            checked[split] = check_context(f"{self.source} [{split}]", arrays, rows[split])
        object.__setattr__(self, "context", checked)  # frozen: the checked int64/uint8 copies


@dataclass(frozen=True)
class TaskSpec:
    """Everything the pipeline needs to know about a task."""

    name: str
    description: str
    modality: str  # one of MODALITIES
    input_shape: tuple[int, ...]
    output: str  # one of OUTPUT_KINDS
    num_outputs: int
    loss: str
    metric: str
    loader: Callable[[], RawTask] = field(repr=False, compare=False)
    default_backbone: str = "minilm-l6"
    max_seq_len: int = 512
    validation_fraction: float = 0.2
    align: AlignConfig = field(default_factory=AlignConfig)
    refine: RefineConfig = field(default_factory=RefineConfig)
    source_file: str | None = None  # the YAML file of a user's task (orca.data.task_file)
    data_version: str = ""  # changes when a user's data files change: part of ingest's key
    # The preset (orca.presets) `align` and `refine` already include, under the task's own
    # values: a task file's `preset:`. A run that names no preset records this one.
    preset: str = DEFAULT_PRESET

    def __post_init__(self) -> None:
        check_choice(f"task {self.name}: modality", self.modality, MODALITIES)
        check_choice(f"task {self.name}: output", self.output, OUTPUT_KINDS)
        check_number(f"task {self.name}: num_outputs", self.num_outputs, minimum=1, integer=True)
        LOSSES.check(self.loss, field=f"task {self.name}: loss")
        METRICS.check(self.metric, field=f"task {self.name}: metric")
        losses, metrics = OUTPUT_CONTRACTS[self.output]
        check_choice(f"task {self.name}: loss for output {self.output!r}", self.loss, losses)
        check_choice(f"task {self.name}: metric for output {self.output!r}", self.metric, metrics)
        check_number(f"task {self.name}: max_seq_len", self.max_seq_len, minimum=1, integer=True)
        PRESETS.check(self.preset, field=f"task {self.name}: preset")
        check_number(
            f"task {self.name}: validation_fraction",
            self.validation_fraction,
            minimum=0,
            maximum=0.9,
            exclusive_minimum=True,
        )

    @property
    def lower_is_better(self) -> bool:
        return METRICS.get(self.metric).lower_is_better

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "modality": self.modality,
            "input_shape": list(self.input_shape),
            "output": self.output,
            "num_outputs": self.num_outputs,
            "loss": self.loss,
            "metric": self.metric,
            "lower_is_better": self.lower_is_better,
            "default_backbone": self.default_backbone,
            "max_seq_len": self.max_seq_len,
            "align": self.align.to_dict(),
            "refine": self.refine.to_dict(),
        }


TASKS: Registry[TaskSpec] = Registry("task")
# Modules whose import registers built-in tasks; imported on first lookup, so that the
# loaders' heavy dependencies load only when a task runs.
BUILTIN_TASK_MODULES = (
    "orca.data.ucr",
    "orca.data.sklearn_tasks",
    "orca.data.pde_tasks",
    "orca.data.benchmark_tasks",
)


def register_task(spec: TaskSpec) -> TaskSpec:
    return TASKS.register(spec.name, spec)


def get_task(name: str) -> TaskSpec:
    _load_builtin_tasks()
    return TASKS.get(name)


def task_names() -> list[str]:
    _load_builtin_tasks()
    return TASKS.names()


def _load_builtin_tasks() -> None:
    # Importing the module registers its tasks; done lazily so optional loaders stay cheap.
    for module in BUILTIN_TASK_MODULES:
        importlib.import_module(module)
