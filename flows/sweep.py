"""The benchmark flow: tasks x methods x seeds, each run the five-stage pipeline.

Ingest and proxy features are shared between runs through the stage cache. Runs are
submitted to the flow's task runner: one at a time by default (one CPU's worth of work);
`sweep.with_options(task_runner=...)` runs them on a thread pool, Dask or Ray instead.
A failed run is recorded and the others go on; the flow run then ends Failed (so that a
scheduled refresh with failed runs looks failed to Prefect's automations), its state
carrying the same results and failures as a completed one returns: call it with
`return_state=True` and read `state.result(raise_on_failure=False)`.

A whole run is cached too (keyed by its config and the code version, not by the MLflow
parent), so re-running a benchmark whose runs are all done costs one cache lookup per run:
the run is recorded under the new benchmark's MLflow run as a copy of the original child
run (tag orca.reused_from). If the run's model file or its original MLflow run is gone,
the run goes through the pipeline again, where each stage still finds what is left of it in
the stage cache.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, runtime, task
from prefect.settings import temporary_settings
from prefect.states import Failed, State
from prefect.task_runners import ThreadPoolTaskRunner

from orca import stopping
from orca.config.pipeline import PipelineConfig
from orca.config.sweep import SweepConfig
from orca.manifest import manifest_problem
from runtime.prefect_api import heartbeats_off
from tasks import storage, sweep_tracking
from tasks.caching import pipeline_run_cache_policy


@task(
    name="pipeline-run",
    cache_policy=pipeline_run_cache_policy(),
    persist_result=True,
    result_storage=storage.result_storage(),
    result_serializer="json",
    cache_expiration=None,
)
def run_pipeline(config: PipelineConfig, parent_run_id: str) -> dict[str, Any]:
    """One pipeline run, nested under the benchmark's MLflow run; models are not registered
    here (the compare flow registers each task's champion)."""
    from flows.pipeline import pipeline  # imported here: resolves in a process-pool worker

    try:
        return pipeline(config, parent_run_id=parent_run_id, register_model=False)
    except BaseException as error:
        if stopping.is_stop(error):  # reported like a failure: the benchmark records it
            raise stopping.RunStopped(str(error) or type(error).__name__) from None
        raise


def _reuse(config: PipelineConfig, parent_run_id: str, cached: dict[str, Any]) -> dict[str, Any]:
    """A run found whole in the run cache, recorded under this benchmark; or run again if
    its model file is gone or damaged (orca/manifest.py), or its MLflow run has gone."""
    source = cached["mlflow_run_id"]
    model = Path(cached.get("model_path") or "")
    if model.is_file() and manifest_problem(model.parent) is None:
        copied = sweep_tracking.copy_child_run(source, parent_run_id)
        if copied is not None:
            stages = {name: "Cached" for name in cached["stages"]}
            return {**cached, "stages": stages, "mlflow_run_id": copied, "reused_from": source}
    return run_pipeline.with_options(refresh_cache=True)(config, parent_run_id)


def _label(config: PipelineConfig) -> str:
    return f"{config.task}/{config.method}/seed{config.seed}"


@flow(
    name="orca-sweep",
    validate_parameters=True,
    task_runner=ThreadPoolTaskRunner(max_workers=1),
)
def sweep(config: SweepConfig) -> dict[str, Any] | State:
    """Run every task x method x seed of `config`; return the results and the failures
    (as the data of a Failed state when any run failed)."""
    storage.ensure_result_storage()  # the cache records' storage, where it is a URL
    runs = config.runs()
    parent = sweep_tracking.start_parent_run(
        "benchmark",
        config.label,
        str(runtime.flow_run.id),
        sweep_tracking.sweep_params(config, len(runs)),
    )
    results, failures = [], []
    # The runs' settings, which the task runner hands on to them: their nested flow runs
    # live and die with this flow run, and send no heartbeats of their own unless the user
    # asked for heartbeats (runtime/prefect_api.py). Set once here: a settings copy per run
    # costs about 20 ms.
    # SIGTERM, SIGINT: the runs stop at their next safe point (orca.stopping), instead of
    # Prefect's handler unwinding this flow while the runs it waits for go on training.
    with temporary_settings(updates=heartbeats_off()), stopping.handle_stop_signals():
        futures = [run_pipeline.submit(run, parent) for run in runs]
        for run, future in zip(runs, futures, strict=True):
            state = future.wait() or future.state
            if not state.is_completed():
                failures.append(f"{_label(run)}: {state.message}")
                continue
            try:
                result = future.result()
                if state.name == "Cached":
                    result = _reuse(run, parent, result)
            except Exception as error:  # a rerun of a reused run failed: record it, go on
                failures.append(f"{_label(run)}: {type(error).__name__}: {error}")
                continue
            results.append(result)
    sweep_tracking.finish_parent_run(parent, len(results), failures)
    out = {"sweep_run_id": parent, "results": results, "failures": failures}
    if failures:
        message = f"{len(failures)} of {len(runs)} runs failed; the first: {failures[0]}"
        return Failed(message=message, data=out)
    return out
