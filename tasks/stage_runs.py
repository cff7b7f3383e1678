"""The pipeline's stages as plain calls on a config: what the flows read as their recipe.

Inside `stage_run(config)`, `ingest(config)`, `proxy(config)`, `align(config, dataset,
proxy)`, `refine(config, dataset, embedder)`, `evaluate(config, dataset, model)` and
`classical(config, dataset)` each run their cached task (tasks/stages.py) with the
arguments it takes from the config, and return the stage's reference. Each call also:
- starts no stage once a stop was asked for (orca.stopping);
- records the stage's final state name in `StageRun.states` and tells this process's
  progress listeners (tasks/progress.py);
- raises the stage's error if it failed;
- calls the run's `on_stage(name, state_name, reference)` (the pipeline logs to MLflow).

`STAGE_CALLS` maps each stage name (orca.stages.order) to its call; a call's arguments after
the config are the references of the stages it needs, in `STAGE_INPUTS` order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from prefect import Task
from prefect.transactions import CommitMode, transaction

from orca import stopping
from orca.config.pipeline import PipelineConfig
from orca.data.task_file import load_task_file
from orca.stages.order import check_stage
from tasks import progress, stages, storage

OnStage = Callable[[str, str, dict[str, Any]], None]


@dataclass
class StageRun:
    """The stages run so far in one `stage_run` block."""

    refresh: str | None = None  # the stage to recompute even if its cache record exists
    on_stage: OnStage | None = None
    states: dict[str, str] = field(default_factory=dict)  # stage name -> final state name


_current: ContextVar[StageRun | None] = ContextVar("orca_stage_run", default=None)


@contextmanager
def stage_run(
    config: PipelineConfig, refresh: str | None = None, on_stage: OnStage | None = None
) -> Iterator[StageRun]:
    """The block in which the stage calls below run, for `config`'s task."""
    if refresh is not None:
        check_stage(refresh, field="refresh")
    if config.task_file is not None:  # a user's task: known to this process from here on
        load_task_file(config.task_file, allow_outside=config.allow_outside)
    storage.ensure_result_storage()  # the cache records' storage, where it is a URL
    run = StageRun(refresh, on_stage)
    token = _current.set(run)
    # EAGER: each stage's cache record is written, and its lock released, as soon as the
    # stage ends. Inside an enclosing transaction (the sweep's cached pipeline-run task)
    # Prefect would otherwise defer both to the end of the whole run: other runs waiting for
    # a shared stage would wait for that, and a later failure would roll the records back.
    try:
        with transaction(commit_mode=CommitMode.EAGER):
            yield run
    finally:
        _current.reset(token)
        progress.flush_artifacts()  # the stages' progress artifacts, sent in the background


def _run(name: str, stage_task: Task, **arguments: Any) -> dict[str, Any]:
    run = _current.get()
    if run is None:
        raise RuntimeError(f"stage {name!r} called outside stage_run(config)")
    stopping.check(f"before stage {name}")  # stopped: start no further stage
    if name == run.refresh:
        stage_task = stage_task.with_options(refresh_cache=True)
    state = stage_task(**arguments, return_state=True)
    run.states[name] = state.name
    progress.stage_ended(name, state.name)
    reference = state.result()  # raises the stage's error if it failed
    if run.on_stage is not None:
        run.on_stage(name, state.name, reference)
    return reference


def ingest(config: PipelineConfig) -> dict[str, Any]:
    """Stage 0: the task's train/validation/test splits, as Arrow files."""
    return _run(
        "ingest",
        stages.ingest,
        task_name=config.task,
        seed=config.split_seed,
        data_version=config.data_version,
        train_fraction=config.train_fraction,
    )


def proxy(config: PipelineConfig) -> dict[str, Any]:
    """Stage 1: the proxy dataset featurised by the body's input embedding."""
    return _run(
        "proxy",
        stages.proxy_features,
        backbone=config.backbone,
        config=config.proxy,
        device=config.resolved_device,
    )


def align(config: PipelineConfig, dataset: dict[str, Any], proxy: dict[str, Any]):
    """Stage 2: the embedder trained towards the proxy features."""
    return _run(
        "align",
        stages.align,
        task_name=config.task,
        backbone=config.backbone,
        dataset=dataset,
        proxy=proxy,
        config=config.align,
        epochs=config.align_epochs,
        seed=config.seed,
        pretrained=config.pretrained_body,
        device=config.resolved_device,
    )


def refine(config: PipelineConfig, dataset: dict[str, Any], embedder: dict[str, Any]):
    """Stage 3: the whole model fine-tuned from the aligned embedder."""
    return _run(
        "refine",
        stages.refine,
        task_name=config.task,
        backbone=config.backbone,
        dataset=dataset,
        embedder=embedder,
        config=config.refine,
        seed=config.seed,
        mode=config.refine_mode,
        pretrained=config.pretrained_body,
        device=config.resolved_device,
    )


def evaluate(config: PipelineConfig, dataset: dict[str, Any], model: dict[str, Any]):
    """Stage 4: the refined model's test metric."""
    return _run(
        "evaluate",
        stages.evaluate,
        task_name=config.task,
        backbone=config.backbone,
        dataset=dataset,
        model=model,
        seed=config.seed,
        device=config.resolved_device,
    )


def classical(config: PipelineConfig, dataset: dict[str, Any]) -> dict[str, Any]:
    """A classical method's one stage: fit on train, select on validation, score test.
    No backbone: a classical model's result does not depend on it, nor does its cache key."""
    return _run(
        "classical",
        stages.classical,
        task_name=config.task,
        model=config.method,
        dataset=dataset,
        seed=config.seed,
    )


STAGE_CALLS: dict[str, Callable[..., dict[str, Any]]] = {
    "ingest": ingest,
    "proxy": proxy,
    "align": align,
    "refine": refine,
    "evaluate": evaluate,
    "classical": classical,
}
