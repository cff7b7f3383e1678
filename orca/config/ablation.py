"""The ablations flow's parameter: the paper's three ablations as pipeline sweeps."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from orca.config.base import Config, check_number
from orca.config.pipeline import PipelineConfig
from orca.data.tasks import get_task
from orca.methods import METHODS


@dataclass(frozen=True)
class AblationConfig(Config):
    """alignment: `task` with the embedder trained for each of `align_epochs`;
    data-limited: `task` with each training fraction, for each of `limited_methods`;
    modality: `image_task` (2D) and `sequence_task` (1D) each with a text body and with a
    vision body, so the paper's finding 5 (text bodies for 1D, vision bodies for 2D) is
    tested both ways; `sequence_task=None` leaves the 1D half out (a vision body on a long
    series costs as much as an image per example)."""

    task: str = "gunpoint"
    align_epochs: tuple[int, ...] = (0, 2, 5, 10, 20)
    train_fractions: tuple[float, ...] = (0.1, 0.25, 0.5, 1.0)
    limited_methods: tuple[str, ...] = ("orca", "no-align", "scratch")
    image_task: str = "digits"
    sequence_task: str | None = "gunpoint"
    text_backbone: str = "minilm-l6"
    vision_backbone: str = "swin-base"
    seeds: int = 2
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("align_epochs", "train_fractions", "limited_methods"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        for epochs in self.align_epochs:
            check_number("align_epochs", epochs, minimum=0, integer=True)
        for fraction in self.train_fractions:
            check_number("train_fractions", fraction, minimum=0, maximum=1, exclusive_minimum=True)
        for method in self.limited_methods:
            METHODS.check(method, field="limited_methods")
        check_number("seeds", self.seeds, minimum=1, integer=True)
        if get_task(self.image_task).modality != "2d":
            raise ValueError(f"image_task={self.image_task!r} must be a 2d task")
        if self.sequence_task is not None and get_task(self.sequence_task).modality != "1d":
            raise ValueError(f"sequence_task={self.sequence_task!r} must be a 1d task")
        # Every run's config validates now (methods, backbones, overrides), before any work.
        self.alignment_runs()
        self.limited_runs()
        for backbone in (self.text_backbone, self.vision_backbone):
            self.modality_runs(backbone)

    def _base(self, task: str, **kwargs: Any) -> PipelineConfig:
        return PipelineConfig.for_task(task, overrides=self.overrides, **kwargs)

    def alignment_runs(self) -> list[PipelineConfig]:
        runs = []
        for seed in range(self.seeds):
            base = self._base(self.task, seed=seed)
            for epochs in self.align_epochs:
                runs.append(replace(base, align=base.align.replace(epochs=epochs)))
        return runs

    def limited_runs(self) -> list[PipelineConfig]:
        return [
            replace(self._base(self.task, method=method, seed=seed), train_fraction=fraction)
            for seed in range(self.seeds)
            for fraction in self.train_fractions
            for method in self.limited_methods
        ]

    def modality_runs(self, backbone: str) -> list[PipelineConfig]:
        tasks = [self.image_task] + ([self.sequence_task] if self.sequence_task else [])
        return [
            self._base(task, backbone=backbone, seed=seed)
            for task in tasks
            for seed in range(self.seeds)
        ]
