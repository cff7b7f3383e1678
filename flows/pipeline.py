"""The single-task pipeline: one task x backbone x method x seed.

ORCA and its neural baselines run ingest -> proxy -> align -> refine -> evaluate; a
classical baseline runs ingest -> classical (orca.methods names each method's family). Each
stage is a cached task (tasks/stage_runs.py), so re-running recomputes only what changed.
The flow opens an MLflow run, logs each stage's result to it as the stage ends, registers
the model (a classical run has none), and returns a summary with every stage's state.
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from orca.config.pipeline import PipelineConfig
from tasks.pipeline_runs import tracked_run
from tasks.stage_runs import align, classical, evaluate, ingest, proxy, refine, stage_run


@flow(name="orca-pipeline", validate_parameters=True)
def pipeline(
    config: PipelineConfig, parent_run_id: str | None = None, register_model: bool = True
) -> dict[str, Any]:
    """Run one task x backbone x method x seed through its method's stages.

    Inside a sweep, `parent_run_id` nests the MLflow run under the sweep's, and
    `register_model=False` leaves model registration to the compare flow's champion.
    """
    with (
        tracked_run(config, parent_run_id) as run,
        stage_run(config, on_stage=run.log_stage) as stages,
    ):
        dataset = ingest(config)
        if config.family == "classical":  # a scikit-learn model on the same splits
            return run.classical_summary(classical(config, dataset), stages.states)
        proxy_features = proxy(config)
        embedder = align(config, dataset, proxy_features)
        model = refine(config, dataset, embedder)
        result = evaluate(config, dataset, model)
        return run.orca_summary(embedder, model, result, stages.states, register_model)
