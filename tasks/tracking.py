"""MLflow tracking for pipeline runs, with explicit run ids (safe in Prefect's thread pool).

Stage metrics are logged from the stages' references, so a run whose stages were all
Cached still records the full alignment and training curves.

Opening, logging to and closing a run are plain functions the pipeline flow calls: each is
one or two MLflow calls, and as Prefect tasks they cost more in orchestration than they do
in work (seven task runs per pipeline run). Registering a model stays a task, in
tasks/model_registry.py (re-exported here for the pipeline's summary).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.entities import Metric, RunTag

from orca.config.base import flatten
from orca.config.pipeline import PipelineConfig
from runtime.state import StateDir

# The model registry's, used from here by the pipeline's summary and the sweep's tasks.
from tasks.model_registry import NO_CACHE as NO_CACHE
from tasks.model_registry import register_model as register_model
from tasks.model_registry import registered_model_name as registered_model_name

EXPERIMENT = "orca"
MAX_METRICS_PER_BATCH = 1000  # MLflow's log_batch limit


def _client() -> MlflowClient:
    return MlflowClient()


def experiment_id(client: MlflowClient) -> str:
    """The orca experiment's id; created on first use with its artifacts in the state
    directory's mlartifacts/ (MLflow's default would be ./mlruns under the working
    directory). Another process creating it at the same moment is not an error."""
    experiment = client.get_experiment_by_name(EXPERIMENT)
    if experiment is not None:
        return experiment.experiment_id
    location = StateDir.from_env().mlflow_artifacts.as_uri()
    try:
        return client.create_experiment(EXPERIMENT, artifact_location=location)
    except mlflow.exceptions.MlflowException:
        experiment = client.get_experiment_by_name(EXPERIMENT)
        if experiment is None:
            raise
        return experiment.experiment_id


def start_run(
    config: PipelineConfig, flow_run_id: str | None, parent_run_id: str | None = None
) -> str:
    """Open the pipeline's MLflow run (a child of a sweep's run when `parent_run_id` is
    given); params are the full config."""
    client = _client()
    tags = {
        "prefect.flow_run_id": str(flow_run_id),
        "orca.task": config.task,
        "orca.method": config.method,
        "orca.backbone": config.backbone,
        "orca.seed": str(config.seed),
        "orca.kind": "pipeline",
    }
    if config.task_file is not None:  # so that another process can load the task again
        tags["orca.task_file"] = config.task_file
    if parent_run_id is not None:
        tags["mlflow.parentRunId"] = parent_run_id
        tags["orca.benchmark_run"] = parent_run_id
    run = client.create_run(
        experiment_id(client),
        run_name=f"{config.task}-{config.method}-seed{config.seed}",
        tags=tags,
    )
    params = run_params(config)
    client.log_batch(
        run.info.run_id,
        params=[mlflow.entities.Param(k, str(v)) for k, v in sorted(params.items())],
    )
    return run.info.run_id


# Config sections a classical run never reads (it has no body, proxy, embedder or
# fine-tuning): logged, their settings would read as if they had shaped the result.
UNUSED_BY_CLASSICAL = ("backbone", "proxy", "align", "refine")


def run_params(config: PipelineConfig) -> dict[str, Any]:
    """The MLflow params of a pipeline run: the full config, plus what the method makes of
    it; a classical run's chosen hyperparameters are added by its stage (STAGE_PARAMS)."""
    params = flatten(config.to_dict())
    if config.family == "classical":
        return {k: v for k, v in params.items() if k.split(".")[0] not in UNUSED_BY_CLASSICAL}
    params["align.epochs_run"] = config.align_epochs
    params["refine.mode"] = config.refine_mode
    params["body.pretrained"] = config.pretrained_body
    return params


def log_stage(run_id: str, stage: str, state_name: str, reference: dict[str, Any]) -> None:
    """Record a stage's final state, its metrics (curves and values) and its result tags in
    the run, in as few MLflow calls as its batch limits allow (usually one)."""
    timestamp = int(time.time() * 1000)
    extract = STAGE_METRICS.get(stage, lambda _: [])
    metrics = [
        Metric(name, float(value), timestamp, step) for name, value, step in extract(reference)
    ]
    tags = {f"stage.{stage}": state_name, **STAGE_TAGS.get(stage, lambda _: {})(reference)}
    if "device" in reference:  # where a torch stage ran (orca.devices), e.g. "cuda:0"
        tags[f"stage.{stage}.device"] = reference["device"]
    params = STAGE_PARAMS.get(stage, lambda _: {})(reference)
    client = _client()
    client.log_batch(
        run_id,
        metrics=metrics[:MAX_METRICS_PER_BATCH],
        params=[mlflow.entities.Param(name, str(value)) for name, value in params.items()],
        tags=[RunTag(name, str(value)) for name, value in tags.items()],
    )
    for start in range(MAX_METRICS_PER_BATCH, len(metrics), MAX_METRICS_PER_BATCH):
        client.log_batch(run_id, metrics=metrics[start : start + MAX_METRICS_PER_BATCH])


def _align_metrics(reference: dict[str, Any]) -> list[tuple[str, float, int]]:
    return [("align_distance", d, step) for step, d in enumerate(reference["distances"])]


def _refine_metrics(reference: dict[str, Any]) -> list[tuple[str, float, int]]:
    curves = [
        (name, record[name], record["epoch"])
        for record in reference["history"]
        for name in ("train_loss", "val_loss", "val_metric", "lr")
    ]
    return [*curves, ("best_val_metric", reference["best_val_metric"], 0)]


def _evaluate_metrics(reference: dict[str, Any]) -> list[tuple[str, float, int]]:
    return [(f"test_{reference['metric']}", reference["value"], 0)]


def _classical_metrics(reference: dict[str, Any]) -> list[tuple[str, float, int]]:
    """The test metric, the chosen candidate's validation score, and every candidate's
    validation score in grid order (step = position in the grid)."""
    candidates = [
        ("candidate_val_metric", candidate["validation_value"], step)
        for step, candidate in enumerate(reference["candidates"])
    ]
    return [
        *_evaluate_metrics(reference),
        ("best_val_metric", reference["validation_value"], 0),
        *candidates,
    ]


# Which metrics each stage's reference carries; stages not listed log only their state.
STAGE_METRICS: dict[str, Callable[[dict[str, Any]], list[tuple[str, float, int]]]] = {
    "align": _align_metrics,
    "refine": _refine_metrics,
    "evaluate": _evaluate_metrics,
    "classical": _classical_metrics,
}

# Params that a stage's result decides: the refine recipe's plan (the epochs, batch size,
# lr and patience it chose, the throughput it measured, the time it expected), a classical
# model's chosen hyperparameters.
STAGE_PARAMS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "refine": lambda ref: {
        f"refine.plan.{name}": value for name, value in (ref.get("plan") or {}).items()
    },
    "classical": lambda ref: {
        f"classical.{name}": value for name, value in sorted(ref["hyperparameters"].items())
    },
}


def _result_tags(reference: dict[str, Any]) -> dict[str, Any]:
    """Which metric is the run's result (the value itself is the metric test_<name>), and
    which way is better. orca.value repeats the value as a tag, as older runs had it only
    there (tasks/sweep_tracking.py reads the metric first)."""
    return {
        "orca.metric": reference["metric"],
        "orca.value": repr(float(reference["value"])),
        "orca.lower_is_better": reference["lower_is_better"],
    }


# Tags that let the compare flow read a run back: its result, and where its model is.
STAGE_TAGS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "refine": lambda ref: {
        "refine.best_epoch": ref["best_epoch"],
        "orca.model_path": ref["path"],
        "orca.model_fingerprint": ref["fingerprint"],
        # the epoch a killed or failed attempt had checkpointed, or None
        "refine.resumed_from_epoch": ref.get("resumed_from_epoch"),
    },
    "evaluate": _result_tags,
    # A classical run's record on disk (its selection.json) stands where a model would.
    "classical": lambda ref: {
        **_result_tags(ref),
        "orca.model_path": ref["path"],
        "orca.model_fingerprint": ref["fingerprint"],
    },
}


def finish_run(run_id: str, status: str, error: str | None = None) -> None:
    """Close the run with its final status, recording the error of a failed one."""
    client = _client()
    if error:
        client.set_tag(run_id, "error", error[:5000])
    client.set_terminated(run_id, status=status)
