"""The whole pipeline's configuration: the flow's parameter, validated on construction.

A config with a `task_file` reads and validates that file (orca.data.task_file's
`read_task_file`) but registers nothing: whoever runs the stages registers the task
(`load_task_file`) in the process that runs them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any

from orca.config.base import Config, Registered, check_number
from orca.config.stages import AlignConfig, ProxyConfig, RefineConfig
from orca.data.task_file import check_task_name_free, read_task_file
from orca.data.tasks import TaskSpec, get_task, task_names
from orca.methods import METHODS
from orca.model.bodies import backbone_kind
from orca.model.embedders import EMBEDDERS
from orca.proxy.datasets import resolve_proxy_name
from orca.registry import UnknownNameError


@dataclass(frozen=True)
class PipelineConfig(Config):
    """One task x backbone x method x seed, with every stage's hyperparameters resolved."""

    task: str
    backbone: str
    method: Annotated[str, Registered("orca.methods", "METHODS")] = "orca"
    seed: int = 0
    proxy: ProxyConfig = field(default_factory=ProxyConfig)
    align: AlignConfig = field(default_factory=AlignConfig)
    refine: RefineConfig = field(default_factory=RefineConfig)
    task_file: str | None = None  # a user's YAML task file, read (not registered) here
    allow_outside: bool = False  # its split files may lie outside its folder (--allow-outside)
    # Seed of the validation split carved from train. Fixed across `seed`s by default, so
    # seeds vary initialisation and data order on the same splits, and ingest runs once.
    split_seed: int = 0
    train_fraction: float = 1.0  # < 1: keep only this share of train (data-limited ablation)

    def __post_init__(self) -> None:
        modality = task_spec(self.task, self.task_file, self.allow_outside).modality
        self.check_registered()  # method
        # A classical method has no body: the backbone is carried (and shown) but unused, so
        # it is not checked, and there is no proxy dataset to resolve for it.
        body_kind = None if self.family == "classical" else backbone_kind(self.backbone)
        if body_kind is not None and f"{body_kind}/{modality}" not in EMBEDDERS:
            raise ValueError(
                f"backbone {self.backbone!r} is a {body_kind} body, which takes no {modality!r} "
                f"input (task {self.task!r}); supported body/input pairs: "
                f"{', '.join(EMBEDDERS.names())}"
            )
        check_number("seed", self.seed, minimum=0, integer=True)
        check_number("split_seed", self.split_seed, minimum=0, integer=True)
        check_number(
            "train_fraction", self.train_fraction, minimum=0, maximum=1, exclusive_minimum=True
        )
        for name, kind in (
            ("proxy", ProxyConfig),
            ("align", AlignConfig),
            ("refine", RefineConfig),
        ):
            value = getattr(self, name)
            if isinstance(value, dict):
                object.__setattr__(self, name, kind.from_dict(value))
            elif not isinstance(value, kind):
                raise ValueError(f"{name} must be a {kind.__name__} or a dict, got {value!r}")
        method_metric = METHODS.get(self.method).align_metric
        if method_metric is not None and self.align.metric != method_metric:
            object.__setattr__(self, "align", replace(self.align, metric=method_metric))
        dataset = self.proxy.dataset
        if body_kind is not None:
            dataset = resolve_proxy_name(self.proxy.dataset, body_kind)
        if dataset != self.proxy.dataset:
            object.__setattr__(self, "proxy", replace(self.proxy, dataset=dataset))

    @classmethod
    def for_task(
        cls,
        task: str | None,
        *,
        backbone: str | None = None,
        method: str = "orca",
        seed: int = 0,
        overrides: dict[str, dict[str, Any]] | None = None,
        task_file: str | None = None,
        allow_outside: bool = False,
    ) -> PipelineConfig:
        """The task's registered defaults, with `overrides` per section (proxy/align/refine).
        With `task_file`, the task it declares (`task` may then be None); `allow_outside`
        lets its split files lie outside its folder."""
        if task_file is not None:
            task_file = str(Path(task_file).expanduser().resolve())
            task = task or read_task_file(task_file, allow_outside=allow_outside).name
        spec = task_spec(task, task_file, allow_outside)
        overrides = dict(overrides or {})
        unknown = sorted(set(overrides) - {"proxy", "align", "refine"})
        if unknown:
            raise ValueError(f"unknown override section(s) {unknown}; valid: proxy, align, refine")
        sections = {
            "proxy": ProxyConfig(),
            "align": spec.align,
            "refine": spec.refine,
        }
        resolved = {
            name: type(default).from_dict({**default.to_dict(), **overrides.get(name, {})})
            for name, default in sections.items()
        }
        return cls(
            task=task,
            backbone=backbone or spec.default_backbone,
            method=method,
            seed=seed,
            task_file=task_file,
            allow_outside=allow_outside,
            **resolved,
        )

    @property
    def data_version(self) -> str:
        """Changes when a task file's data changes, so ingest's cache key sees it."""
        return task_spec(self.task, self.task_file, self.allow_outside).data_version

    @property
    def family(self) -> str:
        """The method's family: "orca" (the five neural stages) or "classical"."""
        return METHODS.get(self.method).family

    @property
    def refine_mode(self) -> str:
        return METHODS.get(self.method).refine_mode

    @property
    def pretrained_body(self) -> bool:
        return METHODS.get(self.method).pretrained_body

    @property
    def align_epochs(self) -> int:
        """Embedder epochs actually run: zero for methods that skip stage 2."""
        return self.align.epochs if METHODS.get(self.method).align else 0


def task_spec(task: str | None, task_file: str | None, allow_outside: bool = False) -> TaskSpec:
    """The spec of `task`, registering nothing: with `task_file`, the one that file declares
    (read and validated; `task` must be its name, which no other task may hold), else a
    registered task. Raises naming the task and the valid ones."""
    if task_file is not None:
        spec = read_task_file(task_file, allow_outside=allow_outside)
        if task != spec.name:
            raise ValueError(f"task={task!r} but the task file {task_file} declares {spec.name!r}")
        check_task_name_free(spec)
        return spec
    if task not in task_names():
        raise UnknownNameError(
            f"task: unknown task {task!r}; valid tasks: {', '.join(task_names())}"
        )
    return get_task(task)
