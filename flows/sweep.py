"""The sweep flow: tasks x methods x seeds, each run through the pipeline flow.

Ingest and proxy features are shared between runs through the stage cache, and whole runs
through the run cache (tasks/sweep_runs.py). Runs are submitted to the flow's task runner:
one at a time by default (one CPU's worth of work); `sweep.with_options(task_runner=...)`
runs them on a thread pool, Dask or Ray instead. A failed run is recorded and the others go
on; the flow run then ends Failed (so that a scheduled refresh with failed runs looks failed
to Prefect's automations), its state carrying the same results and failures as a completed
one returns: call it with `return_state=True` and read `state.result(raise_on_failure=False)`.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, runtime
from prefect.settings import temporary_settings
from prefect.states import Failed, State
from prefect.task_runners import ThreadPoolTaskRunner

from flows.pipeline import pipeline
from orca import stopping
from orca.config.pipeline import PipelineConfig
from orca.config.sweep import SweepConfig
from runtime.prefect_api import heartbeats_off
from tasks import progress, storage, sweep_tracking
from tasks.sweep_runs import reuse_or_rerun, run_label, run_pipeline


def run_in_sweep(config: PipelineConfig, parent_run_id: str) -> dict[str, Any]:
    """One run of a sweep: the pipeline flow, nested under the sweep's MLflow run, its model
    not registered (the compare flow registers each task's champion)."""
    return pipeline(config, parent_run_id=parent_run_id, register_model=False)


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
        futures = [run_pipeline.submit(run_in_sweep, run, parent) for run in runs]
        for run, future in zip(runs, futures, strict=True):
            state = future.wait() or future.state
            if not state.is_completed():
                failures.append(f"{run_label(run)}: {state.message}")
                progress.run_ended(run_label(run), state.name)
                continue
            try:
                result = future.result()
                if state.name == "Cached":
                    result = reuse_or_rerun(run_in_sweep, run, parent, result)
            except Exception as error:  # a rerun of a reused run failed: record it, go on
                failures.append(f"{run_label(run)}: {type(error).__name__}: {error}")
                progress.run_ended(run_label(run), "Failed")
                continue
            results.append(result)
            progress.run_ended(run_label(run), state.name)
    sweep_tracking.finish_parent_run(parent, len(results), failures)
    out = {"sweep_run_id": parent, "results": results, "failures": failures}
    if failures:
        message = f"{len(failures)} of {len(runs)} runs failed; the first: {failures[0]}"
        return Failed(message=message, data=out)
    return out
