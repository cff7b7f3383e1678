"""The single-task ORCA pipeline: ingest -> proxy -> align -> refine -> evaluate.

Each stage is a cached task, so re-running recomputes only what changed. The flow opens an
MLflow run, logs each stage's result to it, registers the model, and returns a summary.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, runtime

from orca.pipeline_config import PipelineConfig
from tasks import stages, tracking

STAGE_NAMES = ("ingest", "proxy", "align", "refine", "evaluate")


def _run_stage(run_id: str, name: str, stage_task, states: dict[str, str], **kwargs: Any):
    state = stage_task(**kwargs, return_state=True)
    states[name] = state.name
    reference = state.result()  # raises the stage's error if it failed
    tracking.log_stage(run_id, name, state.name, reference)
    return reference


@flow(name="orca-pipeline", validate_parameters=True)
def pipeline(
    config: PipelineConfig, parent_run_id: str | None = None, register_model: bool = True
) -> dict[str, Any]:
    """Run one task x backbone x method x seed through all five stages.

    Inside a benchmark, `parent_run_id` nests the MLflow run under the benchmark's, and
    `register_model=False` leaves model registration to the compare flow's champion.
    """
    flow_run_id = str(runtime.flow_run.id)
    run_id = tracking.start_run(config, flow_run_id, parent_run_id)
    states: dict[str, str] = {}
    try:
        dataset = _run_stage(
            run_id,
            "ingest",
            stages.ingest,
            states,
            task_name=config.task,
            seed=config.split_seed,
            data_version=config.data_version,
            train_fraction=config.train_fraction,
        )
        proxy = _run_stage(
            run_id,
            "proxy",
            stages.proxy_features,
            states,
            backbone=config.backbone,
            config=config.proxy,
        )
        embedder = _run_stage(
            run_id,
            "align",
            stages.align,
            states,
            task_name=config.task,
            backbone=config.backbone,
            dataset=dataset,
            proxy=proxy,
            config=config.align,
            epochs=config.align_epochs,
            seed=config.seed,
            pretrained=config.pretrained_body,
        )
        model = _run_stage(
            run_id,
            "refine",
            stages.refine,
            states,
            task_name=config.task,
            backbone=config.backbone,
            dataset=dataset,
            embedder=embedder,
            config=config.refine,
            seed=config.seed,
            mode=config.refine_mode,
            pretrained=config.pretrained_body,
        )
        result = _run_stage(
            run_id,
            "evaluate",
            stages.evaluate,
            states,
            task_name=config.task,
            backbone=config.backbone,
            dataset=dataset,
            model=model,
            seed=config.seed,
        )
        version = tracking.register_model(run_id, config, model) if register_model else None
    except BaseException as error:
        tracking.finish_run(run_id, "FAILED", error=f"{type(error).__name__}: {error}")
        raise
    tracking.finish_run(run_id, "FINISHED")
    return {
        "task": config.task,
        "method": config.method,
        "backbone": config.backbone,
        "seed": config.seed,
        "metric": result["metric"],
        "value": result["value"],
        "lower_is_better": result["lower_is_better"],
        "stages": states,
        "align_distance": {"initial": embedder["distances"][0], "final": embedder["distances"][-1]},
        "best_epoch": model["best_epoch"],
        "model_path": model["path"],
        "registered_model": (
            f"{tracking.registered_model_name(config.task)}/{version}" if version else None
        ),
        "mlflow_run_id": run_id,
        "flow_run_id": flow_run_id,
    }
