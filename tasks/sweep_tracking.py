"""MLflow for sweeps: the parent run, reading child results back, champions.

A sweep is one MLflow run tagged orca.kind=benchmark; each pipeline run under it is a
child (mlflow.parentRunId) tagged orca.benchmark_run=<parent id>, with its result in the
metric test_<name> (the name in the tag orca.metric; runs logged before it was read from
metrics have only the tag orca.value), orca.lower_is_better, and its weights at
orca.model_path.
"""

from __future__ import annotations

import json
import time
from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.entities import Metric, Param
from mlflow.exceptions import MlflowException
from prefect import task

from orca.config.sweep import SweepConfig
from orca.errors import NoResultsError
from tasks.logs import run_logger
from tasks.model_registry import CHAMPION_ALIAS
from tasks.tracking import EXPERIMENT, NO_CACHE, experiment_id, registered_model_name


@task(name="start-parent-tracking", **NO_CACHE)
def start_parent_run(kind: str, label: str, flow_run_id: str, params: dict[str, Any]) -> str:
    """Open the MLflow run that a sweep's (kind="benchmark") or the ablations' (kind=
    "ablation") pipeline runs nest under."""
    client = MlflowClient()
    run = client.create_run(
        experiment_id(client),
        run_name=f"{kind}-{label}",
        tags={"orca.kind": kind, "orca.suite": label, "prefect.flow_run_id": flow_run_id},
    )
    client.log_batch(
        run.info.run_id,
        params=[mlflow.entities.Param(k, str(v)[:6000]) for k, v in params.items()],
    )
    return run.info.run_id


def sweep_params(config: SweepConfig, runs: int) -> dict[str, Any]:
    return {
        "suite": config.label,
        "methods": ",".join(config.methods),
        "seeds": config.seeds,
        "runs": runs,
        "overrides": json.dumps(config.overrides, sort_keys=True),
    }


@task(name="finish-parent-tracking", **NO_CACHE)
def finish_parent_run(run_id: str, completed: int, failed: list[str]) -> None:
    client = MlflowClient()
    client.log_metric(run_id, "runs_completed", completed)
    client.log_metric(run_id, "runs_failed", len(failed))
    if failed:
        client.set_tag(run_id, "failed_runs", "; ".join(failed)[:5000])
    client.set_terminated(run_id, status="FAILED" if failed and not completed else "FINISHED")


def copy_child_run(source_run_id: str, parent_run_id: str) -> str | None:
    """Record a run that a later sweep found whole in the cache: a new child of
    `parent_run_id` with the source run's tags, params and latest metric values, tagged
    orca.reused_from=<source> (its per-epoch curves stay in the source run). Returns the new
    run id, or None if the source run is gone or did not finish (the caller then reruns).

    A plain function, not a task: it is a few MLflow calls inside the sweep flow, and a
    cached re-run makes one per pipeline run.
    """
    client = MlflowClient()
    try:
        source = client.get_run(source_run_id)
    except MlflowException:
        return None
    if source.info.status != "FINISHED":
        return None
    tags = {k: v for k, v in source.data.tags.items() if not k.startswith("mlflow.")}
    tags.update(
        {
            "mlflow.parentRunId": parent_run_id,
            "orca.benchmark_run": parent_run_id,
            "orca.reused_from": source_run_id,
        }
    )
    run_id = client.create_run(
        source.info.experiment_id, run_name=source.info.run_name, tags=tags
    ).info.run_id
    stamp = int(time.time() * 1000)
    params = [Param(k, v) for k, v in sorted(source.data.params.items())]
    metrics = [Metric(k, v, stamp, 0) for k, v in sorted(source.data.metrics.items())]
    for start in range(0, max(len(params), len(metrics)), 100):  # MLflow's batch limits
        client.log_batch(
            run_id, params=params[start : start + 100], metrics=metrics[start : start + 100]
        )
    client.set_terminated(run_id, status="FINISHED")
    return run_id


def latest_sweep_run_id() -> str:
    client = MlflowClient()
    experiment = client.get_experiment_by_name(EXPERIMENT)
    found = (
        client.search_runs(
            [experiment.experiment_id],
            filter_string="tags.`orca.kind` = 'benchmark'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        if experiment
        else []
    )
    if not found:
        raise NoResultsError("no sweep run in MLflow yet: run `orca bench` first")
    return found[0].info.run_id


def sweep_run_of_flow_run(flow_run_id: str) -> str:
    """The MLflow run of the sweep that Prefect flow run `flow_run_id` ran (its parent run
    carries the tag prefect.flow_run_id)."""
    client = MlflowClient()
    experiment = client.get_experiment_by_name(EXPERIMENT)
    found = (
        client.search_runs(
            [experiment.experiment_id],
            filter_string=(
                f"tags.`orca.kind` = 'benchmark' and tags.`prefect.flow_run_id` = '{flow_run_id}'"
            ),
            max_results=1,
        )
        if experiment
        else []
    )
    if not found:
        raise NoResultsError(
            f"sweep_flow_run_id: no sweep run in MLflow was made by flow run {flow_run_id!r}"
        )
    return found[0].info.run_id


@task(name="read-benchmark-results", **NO_CACHE)
def sweep_results(sweep_run_id: str) -> list[dict[str, Any]]:
    """Every finished child run of a sweep, as rows for orca.reporting."""
    client = MlflowClient()
    runs = client.search_runs(
        [experiment_id(client)],
        filter_string=(
            f"tags.`orca.benchmark_run` = '{sweep_run_id}' and attributes.status = 'FINISHED'"
        ),
        max_results=50000,
    )
    rows = []
    for run in runs:
        tags = run.data.tags
        rows.append(
            {
                "task": tags["orca.task"],
                "method": tags["orca.method"],
                "seed": int(tags["orca.seed"]),
                "backbone": tags["orca.backbone"],
                "metric": tags["orca.metric"],
                "value": result_value(run),
                "lower_is_better": tags["orca.lower_is_better"] == "True",
                "run_id": run.info.run_id,
                "model_path": tags.get("orca.model_path"),
                "model_fingerprint": tags.get("orca.model_fingerprint"),
                "task_file": tags.get("orca.task_file"),
            }
        )
    return sorted(rows, key=lambda r: (r["task"], r["method"], r["seed"]))


def result_value(run: Any) -> float:
    """A child run's test result: its metric test_<orca.metric>, or for a run logged
    before results were read from metrics, its tag orca.value."""
    tags = run.data.tags
    value = run.data.metrics.get(f"test_{tags['orca.metric']}")
    return float(value) if value is not None else float(tags["orca.value"])


@task(name="crown-champions", **NO_CACHE)
def crown_champions(runs: list[dict[str, Any]]) -> dict[str, str]:
    """Register the best run of each task's best method and alias it `champion`.

    Only methods that fine-tune a model compete: a classical baseline has no weights to
    register, so where one has the best score the champion is the best fine-tuned model
    (the comparison table still shows the classical one ahead), and a task that only
    classical methods ran gets none. Returns task -> "model-name/version". A version whose
    weights are already registered is reused (see tasks.model_registry.register_model).
    """
    from orca.config.pipeline import PipelineConfig
    from orca.methods import METHODS
    from orca.reporting.comparison import best_methods, summarise
    from tasks.model_registry import register_model

    runs = [run for run in runs if METHODS.get(run["method"]).family == "orca"]
    best = best_methods(summarise(runs))
    client = MlflowClient()
    crowned = {}
    for task_name, methods in best.items():
        candidates = [r for r in runs if r["task"] == task_name and r["method"] in methods]
        sign = 1.0 if candidates[0]["lower_is_better"] else -1.0
        winner = min(candidates, key=lambda r: (sign * r["value"], r["method"], r["seed"]))
        config = PipelineConfig.for_task(  # task_file: a user's task, unknown to this process
            task_name,
            backbone=winner["backbone"],
            method=winner["method"],
            seed=winner["seed"],
            task_file=winner.get("task_file"),
            allow_outside=True,  # a task file the sweep already ran with
        )
        reference = {"path": winner["model_path"], "fingerprint": winner["model_fingerprint"]}
        version = register_model.fn(winner["run_id"], config, reference)
        name = registered_model_name(task_name)
        client.set_registered_model_alias(name, CHAMPION_ALIAS, version)
        crowned[task_name] = f"{name}/{version}"
        run_logger().info(
            "champion of %s: %s (%s)", task_name, crowned[task_name], winner["method"]
        )
    return crowned


@task(name="log-report", **NO_CACHE)
def log_report(sweep_run_id: str, paths: list[str]) -> None:
    client = MlflowClient()
    for path in paths:
        client.log_artifact(sweep_run_id, path, artifact_path="report")
