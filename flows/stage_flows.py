"""One flow per pipeline stage, so that a deployment can re-run one stage for one task.

Each flow takes the same `PipelineConfig` as the pipeline flow (validated by the flow's
signature) and runs its stage with the pipeline's own stage calls. The stages it needs come
first, from their cached tasks: after a pipeline run they come back Cached, so only the
stage asked for does any work. `refresh=True` recomputes that stage even when its cache
record exists. No MLflow run is opened; the pipeline flow is the tracked path.
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from orca.config.pipeline import PipelineConfig
from orca.stages.order import FAMILY_STAGES, STAGE_INPUTS, stages_through
from tasks.stage_runs import STAGE_CALLS, stage_run


def run_one_stage(config: PipelineConfig, stage: str, refresh: bool = False) -> dict[str, Any]:
    """Run `stage` (and, from the cache, what it needs); return its reference and every
    stage's final state. Raises ValueError if `config`'s method does not run `stage` (a
    classical method runs ingest and classical only)."""
    family_stages = FAMILY_STAGES[config.family]
    if stage not in family_stages:
        raise ValueError(
            f"method {config.method!r} does not run stage {stage!r}; its stages: "
            f"{', '.join(family_stages)}"
        )
    references: dict[str, Any] = {}
    with stage_run(config, refresh=stage if refresh else None) as run:
        for name in stages_through(stage):  # each stage's inputs are earlier in this order
            inputs = (references[needed] for needed in STAGE_INPUTS[name])
            references[name] = STAGE_CALLS[name](config, *inputs)
    return {
        "task": config.task,
        "backbone": config.backbone,
        "method": config.method,
        "seed": config.seed,
        "stage": stage,
        "states": run.states,
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
