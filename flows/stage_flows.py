"""One flow per pipeline stage, so that a deployment can re-run one stage for one task.

Each flow takes the same `PipelineConfig` as the pipeline flow (validated by the flow's
signature) and runs its stage through the pipeline's own wiring. The stages it needs come
first, from their cached tasks: after a pipeline run they come back Cached, so only the
stage asked for does any work. `refresh=True` recomputes that stage even when its cache
record exists. No MLflow run is opened; the pipeline flow is the tracked path.
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.pipeline import pipeline_stages, run_stages, stages_through
from orca.config.pipeline import PipelineConfig


def run_one_stage(config: PipelineConfig, stage: str, refresh: bool = False) -> dict[str, Any]:
    """Run `stage` (and, from the cache, what it needs); return its reference and every
    stage's final state. Raises ValueError if `config`'s method does not run `stage` (a
    classical method runs ingest and classical only)."""
    if stage not in pipeline_stages(config):
        raise ValueError(
            f"method {config.method!r} does not run stage {stage!r}; its stages: "
            f"{', '.join(pipeline_stages(config))}"
        )
    states: dict[str, str] = {}
    references = run_stages(
        config, stages_through(stage), states, refresh=stage if refresh else None
    )
    return {
        "task": config.task,
        "backbone": config.backbone,
        "method": config.method,
        "seed": config.seed,
        "stage": stage,
        "states": states,
        "reference": references[stage],
    }


@flow(name="orca-stage-ingest", validate_parameters=True)
def ingest_stage(config: PipelineConfig, refresh: bool = False) -> dict[str, Any]:
    """Stage 0: write the task's train/validation/test splits."""
    return run_one_stage(config, "ingest", refresh)


@flow(name="orca-stage-proxy", validate_parameters=True)
def proxy_stage(config: PipelineConfig, refresh: bool = False) -> dict[str, Any]:
    """Stage 1: featurise the proxy dataset with the backbone's input embedding."""
    return run_one_stage(config, "proxy", refresh)


@flow(name="orca-stage-align", validate_parameters=True)
def align_stage(config: PipelineConfig, refresh: bool = False) -> dict[str, Any]:
    """Stage 2: train the embedder towards the proxy (ingest and proxy from the cache)."""
    return run_one_stage(config, "align", refresh)


@flow(name="orca-stage-refine", validate_parameters=True)
def refine_stage(config: PipelineConfig, refresh: bool = False) -> dict[str, Any]:
    """Stage 3: fine-tune the model (ingest, proxy and align from the cache)."""
    return run_one_stage(config, "refine", refresh)


@flow(name="orca-stage-evaluate", validate_parameters=True)
def evaluate_stage(config: PipelineConfig, refresh: bool = False) -> dict[str, Any]:
    """Stage 4: the test metric of the refined model (earlier stages from the cache)."""
    return run_one_stage(config, "evaluate", refresh)
