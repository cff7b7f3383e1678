"""The recommend flow's parameter: one task and the (body, proxy) candidates to rank for it.

`RecommendConfig.plan()` turns it into one PipelineConfig per candidate, the config `orca run`
would use for that body, proxy and method (so the stages the recommendation runs are the
run's cached ones), with the `orca run` command that reuses them. Construction plans once, so
an unknown body, a body without weights, or a proxy that does not fit is named before any
work (orca.recommend.plan_candidates says how).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Annotated, Any

from orca.config.base import Config, Registered, check_number
from orca.config.pipeline import PipelineConfig
from orca.recommend import DEFAULT_RANK_SIGNAL

OVERRIDE_SECTIONS = ("proxy", "align", "refine")


@dataclass(frozen=True)
class PlannedCandidate:
    """One candidate: its `--bodies` token, its run's config, and that run's command."""

    body: str
    config: PipelineConfig
    run_command: str


@dataclass(frozen=True)
class RecommendPlan:
    candidates: tuple[PlannedCandidate, ...]
    notes: tuple[str, ...]  # default bodies left out, epochs that differ from the run's


@dataclass(frozen=True)
class RecommendConfig(Config):
    """`bodies`: backbone strings or `random:BACKBONE` (empty: orca.recommend.DEFAULT_BODIES);
    `proxies`: proxy dataset names (empty: every local one that fits each body); `overrides`
    ({"align": {"lr": 1e-4}}) apply to every candidate's run as `orca run --set` does, except
    proxy.dataset (that is `proxies`); `align_epochs` shortens alignment (a later `orca run`
    then needs the same --set align.epochs to reuse it); `budget_s`: no candidate starts after
    that many seconds. `signals`: the extra signals to measure for each candidate
    (orca.recommend_signals: otdd_scaled, probe, otdd_kmeans; the align record's always
    are); `rank_by`: the signal the ranking sorts by, measured whether listed or not."""

    task: str | None = None
    task_file: str | None = None
    bodies: tuple[str, ...] = ()
    proxies: tuple[str, ...] = ()
    budget_s: float | None = None
    align_epochs: int | None = None
    seed: int = 0
    device: Annotated[str, Registered("orca.devices", "DEVICES")] = "auto"
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    allow_outside: bool = False
    signals: tuple[str, ...] = ()
    rank_by: str = DEFAULT_RANK_SIGNAL

    def __post_init__(self) -> None:
        from orca.recommend_signals import SIGNALS

        for name in ("bodies", "proxies", "signals"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if not (self.task or self.task_file):
            raise ValueError("a recommendation needs a task or a task_file")
        if self.budget_s is not None:
            check_number("budget_s", self.budget_s, minimum=0, exclusive_minimum=True)
        if self.align_epochs is not None:
            check_number("align_epochs", self.align_epochs, minimum=1, integer=True)
        check_number("seed", self.seed, minimum=0, integer=True)
        unknown = sorted(set(self.overrides) - set(OVERRIDE_SECTIONS))
        if unknown:
            raise ValueError(
                f"overrides: unknown section(s) {unknown}; valid: {', '.join(OVERRIDE_SECTIONS)}"
            )
        if "dataset" in self.overrides.get("proxy", {}):
            raise ValueError("overrides proxy.dataset: name the proxies in `proxies` instead")
        for name in self.signals:
            SIGNALS.check(name, field="signals")
        SIGNALS.check(self.rank_by, field="rank_by")
        self.check_registered()
        self.plan()  # every candidate validates now, before any work

    @property
    def measured_signals(self) -> tuple[str, ...]:
        """The align record's signals, the one ranked by, then the extra ones asked for."""
        from orca.recommend_signals import RECORD_SIGNALS

        return tuple(dict.fromkeys((*RECORD_SIGNALS, self.rank_by, *self.signals)))

    @property
    def label(self) -> str:
        return self.task or self.task_file or ""

    def plan(self) -> RecommendPlan:
        from orca.recommend import RANDOM_PREFIX, plan_candidates

        candidates, left_out = plan_candidates(self.bodies or None, self.proxies or None)
        notes = set(left_out)
        planned = []
        for candidate in candidates:
            config = self._run_config(
                candidate.body.backbone, candidate.body.method, candidate.proxy
            )
            if self.align_epochs is not None:
                default = self._run_config(
                    candidate.body.backbone, candidate.body.method, candidate.proxy, epochs=False
                )
                if default.align.epochs != config.align.epochs:
                    notes.add(
                        f"align_epochs {self.align_epochs} differs from the run's default "
                        f"({default.align.epochs}): a later `orca run` recomputes align unless "
                        f"it is given --set align.epochs={self.align_epochs}"
                    )
            if candidate.body.is_control:
                notes.add(
                    f"{RANDOM_PREFIX}BODY is the random-weights control (`orca run --method "
                    "scratch`): that method skips alignment, so its two distances are equal"
                )
            command = self._run_command(config, candidate.proxy)
            planned.append(PlannedCandidate(candidate.body.token, config, command))
        return RecommendPlan(tuple(planned), tuple(sorted(notes)))

    def _sections(self, proxy: str, epochs: bool = True) -> dict[str, dict[str, Any]]:
        sections = {name: dict(values) for name, values in self.overrides.items()}
        sections.setdefault("proxy", {})["dataset"] = proxy
        if epochs and self.align_epochs is not None:
            sections.setdefault("align", {})["epochs"] = self.align_epochs
        return sections

    def _run_config(
        self, backbone: str, method: str, proxy: str, epochs: bool = True
    ) -> PipelineConfig:
        return PipelineConfig.for_task(
            self.task,
            backbone=backbone,
            method=method,
            seed=self.seed,
            overrides=self._sections(proxy, epochs),
            task_file=self.task_file,
            allow_outside=self.allow_outside,
            device=self.device,
        )

    def _run_command(self, config: PipelineConfig, proxy: str) -> str:
        """The `orca run` command whose ingest, proxy and align this candidate caches."""
        words = ["orca", "run"]
        words += ["--task-file", config.task_file] if config.task_file else [config.task]
        words += ["--backbone", config.backbone]
        if config.method != "orca":
            words += ["--method", config.method]
        if self.seed:
            words += ["--seed", str(self.seed)]
        if self.device != "auto":
            words += ["--device", self.device]
        if self.allow_outside:
            words += ["--allow-outside"]
        for section, values in self._sections(proxy).items():
            for key, value in values.items():
                words += ["--set", f"{section}.{key}={value}"]
        return shlex.join(words)


@dataclass(frozen=True)
class RecommendValidationConfig(Config):
    """`orca recommend --validate`: for every task of `suite` (and `tasks`), recommend with
    every signal of orca.recommend_signals, then run the full pipeline for every candidate,
    and measure how well each signal predicted the test error. Bodies, proxies, seed,
    device and overrides are those of each task's RecommendConfig."""

    suite: str | None = "demo"
    tasks: tuple[str, ...] = ()
    bodies: tuple[str, ...] = ()
    proxies: tuple[str, ...] = ()
    seeds: int = 1  # signals and test errors are averaged over seeds 0 .. seeds-1
    device: Annotated[str, Registered("orca.devices", "DEVICES")] = "auto"
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from orca.suites import SUITES

        check_number("seeds", self.seeds, minimum=1, integer=True)
        for name in ("tasks", "bodies", "proxies"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if self.suite is not None:
            SUITES.check(self.suite, field="suite")
        if not self.task_names:
            raise ValueError("a validation needs a suite or tasks")
        self.check_registered()
        self.recommendations(0)  # every task's candidates validate now, before any work

    @property
    def task_names(self) -> tuple[str, ...]:
        from orca.suites import SUITES

        suite = SUITES.get(self.suite) if self.suite else ()
        return tuple(dict.fromkeys([*suite, *self.tasks]))

    @property
    def label(self) -> str:
        return self.suite or ",".join(self.tasks)

    def command(self) -> str:
        """The `orca recommend --validate` command that runs this validation."""
        words = ["orca", "recommend", "--validate", *self.tasks]
        if self.suite and (self.suite != "demo" or self.tasks):
            words += ["--suite", self.suite]
        if self.seeds != 1:
            words += ["--seeds", str(self.seeds)]
        if self.device != "auto":
            words += ["--device", self.device]
        for flag, values in (("--bodies", self.bodies), ("--proxies", self.proxies)):
            if values:
                words += [flag, ",".join(values)]
        for section, values in self.overrides.items():
            for key, value in values.items():
                words += ["--set", f"{section}.{key}={value}"]
        return shlex.join(words)

    def recommendations(self, seed: int) -> list[RecommendConfig]:
        """Every task's RecommendConfig for `seed`, with every computed signal."""
        from orca.recommend_signals import COMPUTED

        return [
            RecommendConfig(
                task=task,
                bodies=self.bodies,
                proxies=self.proxies,
                seed=seed,
                device=self.device,
                overrides=self.overrides,
                signals=tuple(COMPUTED.names()),
            )
            for task in self.task_names
        ]
