"""The sweep flow's parameter: tasks x methods x seeds, validated on construction."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

from orca.config.base import Config, Registered, check_number
from orca.config.pipeline import PipelineConfig
from orca.methods import METHODS
from orca.stages.order import FAMILY_STAGES
from orca.suites import SUITES

# Every method in orca.methods, family by family, each in registration order: the paper's
# comparison (ORCA, its alignment-metric variants and the baselines), then the classical
# baselines, which take seconds.
DEFAULT_METHODS = tuple(
    name for family in FAMILY_STAGES for name, spec in METHODS.items() if spec.family == family
)


@dataclass(frozen=True)
class SweepConfig(Config):
    """Which runs a sweep makes. `suite` names a task list in orca.suites; `tasks` and
    `task_files` add to it. `overrides` apply to every run ({"refine": {"epochs": 3}}), over
    `preset` (orca.presets), which every run applies to its task's defaults."""

    suite: str | None = None
    tasks: tuple[str, ...] = ()
    task_files: tuple[str, ...] = ()
    methods: tuple[str, ...] = DEFAULT_METHODS
    seeds: int = 3
    backbone: str | None = None
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    name: str = ""
    allow_outside: bool = False  # task files' splits may lie outside their folders
    # Every run's PipelineConfig.device (orca.devices), checked when the runs are made.
    device: Annotated[str, Registered("orca.devices", "DEVICES")] = "auto"
    # Every run's PipelineConfig.preset (orca.presets), checked when the runs are made.
    preset: Annotated[str, Registered("orca.presets", "PRESETS")] = "orca"

    def __post_init__(self) -> None:
        for name in ("tasks", "task_files", "methods"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if self.suite is not None:
            SUITES.check(self.suite, field="suite")
        if not (self.suite or self.tasks or self.task_files):
            raise ValueError("a sweep needs a suite, tasks or task_files")
        if not self.methods:
            raise ValueError(f"methods must not be empty; valid: {', '.join(METHODS.names())}")
        for method in self.methods:
            METHODS.check(method, field="methods")
        check_number("seeds", self.seeds, minimum=1, integer=True)
        self.runs()  # every run's PipelineConfig validates now, before any work

    @property
    def label(self) -> str:
        return self.name or self.suite or "custom"

    def runs(self) -> list[PipelineConfig]:
        """Every run, task-major, so a task's shared stages are computed by its first run."""
        configs = [
            PipelineConfig.for_task(
                None,
                task_file=path,
                backbone=self.backbone,
                overrides=self.overrides,
                allow_outside=self.allow_outside,
                device=self.device,
                preset=self.preset,
            )
            for path in self.task_files
        ]
        tasks = [*(SUITES.get(self.suite) if self.suite else ()), *self.tasks]
        names = list(dict.fromkeys([*tasks, *(c.task for c in configs)]))
        files = {c.task: c.task_file for c in configs}
        return [
            PipelineConfig.for_task(
                task,
                backbone=self.backbone,
                method=method,
                seed=seed,
                overrides=self.overrides,
                task_file=files.get(task),
                allow_outside=self.allow_outside,
                device=self.device,
                preset=self.preset,
            )
            for task in names
            for seed in range(self.seeds)
            for method in self.methods
        ]
