"""The benchmark flow: tasks x methods x seeds, each run the five-stage pipeline.

Ingest and proxy features are shared between runs through the stage cache. Runs are
submitted to the flow's task runner: one at a time by default (one CPU's worth of work);
`benchmark.with_options(task_runner=...)` runs them on a thread pool, Dask or Ray instead.
A failed run is recorded and the others go on.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, runtime, task
from prefect.task_runners import ThreadPoolTaskRunner

from flows.pipeline import pipeline
from orca.benchmark_config import BenchmarkConfig
from orca.pipeline_config import PipelineConfig
from tasks import benchmark_tracking


@task(name="pipeline-run", persist_result=False, cache_policy=None)
def run_pipeline(config: PipelineConfig, parent_run_id: str) -> dict[str, Any]:
    """One pipeline run, nested under the benchmark's MLflow run; models are not registered
    here (the compare flow registers each task's champion)."""
    return pipeline(config, parent_run_id=parent_run_id, register_model=False)


def _label(config: PipelineConfig) -> str:
    return f"{config.task}/{config.method}/seed{config.seed}"


@flow(
    name="orca-benchmark",
    validate_parameters=True,
    task_runner=ThreadPoolTaskRunner(max_workers=1),
)
def benchmark(config: BenchmarkConfig) -> dict[str, Any]:
    """Run every task x method x seed of `config`; return the results and the failures."""
    runs = config.runs()
    parent = benchmark_tracking.start_parent_run(
        "benchmark",
        config.label,
        str(runtime.flow_run.id),
        benchmark_tracking.benchmark_params(config, len(runs)),
    )
    futures = [run_pipeline.submit(run, parent) for run in runs]
    results, failures = [], []
    for run, future in zip(runs, futures, strict=True):
        state = future.wait() or future.state
        if state.is_completed():
            results.append(future.result())
        else:
            failures.append(f"{_label(run)}: {state.message}")
    benchmark_tracking.finish_parent_run(parent, len(results), failures)
    return {"benchmark_run_id": parent, "results": results, "failures": failures}
