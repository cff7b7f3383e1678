"""A sweep's runs (flows/sweep.py, flows/ablations.py): each a cached task around the
pipeline flow.

A whole run is cached (keyed by its config and the code version, not by the MLflow parent,
tasks/caching.py), so re-running a sweep whose runs are all done costs one cache lookup per
run: the run is recorded under the new sweep's MLflow run as a copy of the original child
run (tag orca.reused_from). If the run's model file or its original MLflow run is gone, the
run goes through the pipeline again, where each stage still finds what is left of it in the
stage cache.

The calling flow passes in what one run calls (`run`, a module-level function of flows/
around the pipeline flow, so that it pickles by name into worker processes): tasks/ never
imports flows/.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from prefect import task

from orca import stopping
from orca.config.pipeline import PipelineConfig
from orca.manifest import manifest_problem
from tasks import storage, sweep_tracking
from tasks.caching import pipeline_run_cache_policy

RunCall = Callable[[PipelineConfig, str], dict[str, Any]]


@task(
    name="pipeline-run",
    cache_policy=pipeline_run_cache_policy(),
    persist_result=True,
    result_storage=storage.result_storage(),
    result_serializer="json",
    cache_expiration=None,
)
def run_pipeline(run: RunCall, config: PipelineConfig, parent_run_id: str) -> dict[str, Any]:
    """`run(config, parent_run_id)`: one pipeline run, nested under the sweep's MLflow run."""
    try:
        return run(config, parent_run_id)
    except BaseException as error:
        if stopping.is_stop(error):  # reported like a failure: the sweep records it
            raise stopping.RunStopped(str(error) or type(error).__name__) from None
        raise


def reuse_or_rerun(
    run: RunCall, config: PipelineConfig, parent_run_id: str, cached: dict[str, Any]
) -> dict[str, Any]:
    """A run found whole in the run cache, recorded under this sweep; or run again if its
    model file is gone or damaged (orca/manifest.py), or its MLflow run has gone."""
    source = cached["mlflow_run_id"]
    model = Path(cached.get("model_path") or "")
    if model.is_file() and manifest_problem(model.parent) is None:
        copied = sweep_tracking.copy_child_run(source, parent_run_id)
        if copied is not None:
            states = dict.fromkeys(cached["states"], "Cached")
            return {**cached, "states": states, "mlflow_run_id": copied, "reused_from": source}
    return run_pipeline.with_options(refresh_cache=True)(run, config, parent_run_id)


def run_label(config: PipelineConfig) -> str:
    return f"{config.task}/{config.method}/seed{config.seed}"
