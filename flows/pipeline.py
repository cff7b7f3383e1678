"""The single-task pipeline: ingest -> proxy -> align -> refine -> evaluate for ORCA and its
neural baselines, ingest -> classical for the classical baselines (orca.methods' families).

Each stage is a cached task, so re-running recomputes only what changed. The flow opens an
MLflow run, logs each stage's result to it, registers the model (a classical run has none
to register), and returns a summary.

`run_stages` is the stage wiring (which task each stage calls, with which arguments and
which earlier stages' references); the per-stage flows in flows/stage_flows.py share it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from prefect import Task, flow, runtime
from prefect.transactions import CommitMode, transaction

from orca import stopping
from orca.config.pipeline import PipelineConfig
from tasks import progress, stages, storage, tracking

STAGE_NAMES = ("ingest", "proxy", "align", "refine", "evaluate")
CLASSICAL_STAGE_NAMES = ("ingest", "classical")
# The stages each method family runs, in order.
FAMILY_STAGES: dict[str, tuple[str, ...]] = {
    "orca": STAGE_NAMES,
    "classical": CLASSICAL_STAGE_NAMES,
}
ALL_STAGES = (*STAGE_NAMES, "classical")

# The earlier stages whose references each stage takes as inputs.
STAGE_INPUTS: dict[str, tuple[str, ...]] = {
    "ingest": (),
    "proxy": (),
    "align": ("ingest", "proxy"),
    "refine": ("ingest", "align"),
    "evaluate": ("ingest", "refine"),
    "classical": ("ingest",),
}


def pipeline_stages(config: PipelineConfig) -> tuple[str, ...]:
    """The stages `config`'s method runs, in order."""
    return FAMILY_STAGES[config.family]


def stages_through(stage: str) -> tuple[str, ...]:
    """`stage` and every stage it needs, directly or not, in pipeline order."""
    if stage not in STAGE_INPUTS:
        raise ValueError(f"unknown stage {stage!r}; valid stages: {', '.join(ALL_STAGES)}")
    needed, pending = set(), [stage]
    while pending:
        name = pending.pop()
        if name not in needed:
            needed.add(name)
            pending.extend(STAGE_INPUTS[name])
    return tuple(name for name in ALL_STAGES if name in needed)


def _ingest_call(config: PipelineConfig, references: dict[str, Any]):
    return stages.ingest, {
        "task_name": config.task,
        "seed": config.split_seed,
        "data_version": config.data_version,
        "train_fraction": config.train_fraction,
    }


def _proxy_call(config: PipelineConfig, references: dict[str, Any]):
    return stages.proxy_features, {"backbone": config.backbone, "config": config.proxy}


def _align_call(config: PipelineConfig, references: dict[str, Any]):
    return stages.align, {
        "task_name": config.task,
        "backbone": config.backbone,
        "dataset": references["ingest"],
        "proxy": references["proxy"],
        "config": config.align,
        "epochs": config.align_epochs,
        "seed": config.seed,
        "pretrained": config.pretrained_body,
    }


def _refine_call(config: PipelineConfig, references: dict[str, Any]):
    return stages.refine, {
        "task_name": config.task,
        "backbone": config.backbone,
        "dataset": references["ingest"],
        "embedder": references["align"],
        "config": config.refine,
        "seed": config.seed,
        "mode": config.refine_mode,
        "pretrained": config.pretrained_body,
    }


def _evaluate_call(config: PipelineConfig, references: dict[str, Any]):
    return stages.evaluate, {
        "task_name": config.task,
        "backbone": config.backbone,
        "dataset": references["ingest"],
        "model": references["refine"],
        "seed": config.seed,
    }


def _classical_call(config: PipelineConfig, references: dict[str, Any]):
    # No backbone: a classical model's result does not depend on it, nor does its cache key.
    return stages.classical, {
        "task_name": config.task,
        "model": config.method,
        "dataset": references["ingest"],
        "seed": config.seed,
    }


# Stage name -> (config, references of the stages it needs) -> (its task, the arguments).
STAGE_CALLS: dict[str, Callable[..., tuple[Task, dict[str, Any]]]] = {
    "ingest": _ingest_call,
    "proxy": _proxy_call,
    "align": _align_call,
    "refine": _refine_call,
    "evaluate": _evaluate_call,
    "classical": _classical_call,
}


def stage_call(
    config: PipelineConfig, stage: str, references: dict[str, Any]
) -> tuple[Task, dict[str, Any]]:
    """The task that runs `stage` for `config`, and its arguments; `references` holds the
    results of the stages it needs (STAGE_INPUTS)."""
    if stage not in STAGE_CALLS:
        raise ValueError(f"unknown stage {stage!r}; valid stages: {', '.join(ALL_STAGES)}")
    return STAGE_CALLS[stage](config, references)


def run_stages(
    config: PipelineConfig,
    names: Iterable[str],
    states: dict[str, str],
    on_stage: Callable[[str, str, dict[str, Any]], None] | None = None,
    refresh: str | None = None,
) -> dict[str, Any]:
    """Run the stages `names` in order; return their references by stage name.

    Each stage's final state name goes into `states` as soon as it is known (and to this
    process's progress listeners, tasks/progress.py), then
    `on_stage(name, state_name, reference)` is called. A failed stage raises its error.
    `refresh` names one stage to recompute even if its cache record exists.
    """
    storage.ensure_result_storage()  # the cache records' storage, where it is a URL
    references: dict[str, Any] = {}
    # EAGER: each stage's cache record is written, and its lock released, as soon as the
    # stage ends. Inside an enclosing transaction (the benchmark's cached pipeline-run task)
    # Prefect would otherwise defer both to the end of the whole run: other runs waiting for
    # a shared stage would wait for that, and a later failure would roll the records back.
    try:
        with transaction(commit_mode=CommitMode.EAGER):
            for name in names:
                stopping.check(f"before stage {name}")  # stopped: start no further stage
                stage_task, arguments = stage_call(config, name, references)
                if name == refresh:
                    stage_task = stage_task.with_options(refresh_cache=True)
                state = stage_task(**arguments, return_state=True)
                states[name] = state.name
                progress.stage_ended(name, state.name)
                references[name] = state.result()  # raises the stage's error if it failed
                if on_stage is not None:
                    on_stage(name, state.name, references[name])
    finally:
        progress.flush_artifacts()  # the stages' progress artifacts, sent in the background
    return references


def _orca_outcome(references: dict[str, Any]) -> dict[str, Any]:
    embedder, model, result = (references[name] for name in ("align", "refine", "evaluate"))
    return {
        "metric": result["metric"],
        "value": result["value"],
        "lower_is_better": result["lower_is_better"],
        "align_distance": {"initial": embedder["distances"][0], "final": embedder["distances"][-1]},
        "best_epoch": model["best_epoch"],
        "model_path": model["path"],
    }


def _classical_outcome(references: dict[str, Any]) -> dict[str, Any]:
    result = references["classical"]
    return {
        "metric": result["metric"],
        "value": result["value"],
        "lower_is_better": result["lower_is_better"],
        "align_distance": None,  # no embedder
        "best_epoch": None,  # no epochs
        "model_path": result["path"],  # the selection record: what the benchmark reuses
        "hyperparameters": result["hyperparameters"],
        "validation_value": result["validation_value"],
    }


# Method family -> the summary fields its stages' references give.
FAMILY_OUTCOMES: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "orca": _orca_outcome,
    "classical": _classical_outcome,
}


@flow(name="orca-pipeline", validate_parameters=True)
def pipeline(
    config: PipelineConfig, parent_run_id: str | None = None, register_model: bool = True
) -> dict[str, Any]:
    """Run one task x backbone x method x seed through its method's stages.

    Inside a benchmark, `parent_run_id` nests the MLflow run under the benchmark's, and
    `register_model=False` leaves model registration to the compare flow's champion. A
    classical method registers no model: it has no weights, only its selection record.
    """
    flow_run_id = str(runtime.flow_run.id)
    run_id = tracking.start_run(config, flow_run_id, parent_run_id)
    states: dict[str, str] = {}

    def log_stage(name: str, state_name: str, reference: dict[str, Any]) -> None:
        tracking.log_stage(run_id, name, state_name, reference)

    try:
        references = run_stages(config, pipeline_stages(config), states, on_stage=log_stage)
        outcome = FAMILY_OUTCOMES[config.family](references)
        registers = register_model and "refine" in references
        version = (
            tracking.register_model(run_id, config, references["refine"]) if registers else None
        )
    except BaseException as error:
        status = "KILLED" if stopping.is_stop(error) else "FAILED"
        tracking.finish_run(run_id, status, error=f"{type(error).__name__}: {error}")
        raise
    tracking.finish_run(run_id, "FINISHED")
    return {
        "task": config.task,
        "method": config.method,
        "backbone": config.backbone,
        "seed": config.seed,
        **outcome,
        "stages": states,
        "registered_model": (
            f"{tracking.registered_model_name(config.task)}/{version}" if version else None
        ),
        "mlflow_run_id": run_id,
        "flow_run_id": flow_run_id,
    }
