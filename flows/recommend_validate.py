"""The recommendation's validation: do the cheap signals predict the fine-tuned result?

For every task of the RecommendValidationConfig: the recommend flow with every signal
(orca.recommend_signals), then the full pipeline for every candidate, each a cached whole
run like a sweep's (tasks/sweep_runs.py: a second validation reuses them), nested under one
MLflow run tagged orca.kind=recommend-validation. The report
(orca/reporting/recommend_validation.py) goes to `reports_dir` and to that MLflow run. A
candidate whose run fails is left out of its task's statistics and listed in the report; a
task with fewer than two measured candidates has no statistics.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

import numpy as np
from prefect import flow, runtime
from prefect.settings import temporary_settings

from flows.pipeline import pipeline
from flows.recommend import recommend
from orca import stopping
from orca.config.pipeline import PipelineConfig
from orca.config.recommend import RecommendValidationConfig
from orca.recommend_validation import TaskOutcome
from orca.reporting.results import machine_description
from runtime.prefect_api import heartbeats_off
from tasks import recommend_runs, storage, sweep_tracking
from tasks.sweep_runs import reuse_or_rerun, run_label, run_pipeline


def _outcomes(
    config: RecommendValidationConfig,
    errors: dict[tuple[str, str], list[float]],
    signals: dict[tuple[str, str], list[dict[str, float]]],
    metrics: dict[str, str],
    failures: list[str],
) -> list[TaskOutcome]:
    """Each task's candidates measured on every seed, their signals and errors averaged."""
    outcomes = []
    for task in config.task_names:
        labels = [
            label
            for (name, label), values in errors.items()
            if name == task and len(values) == config.seeds
        ]
        if len(labels) < 2:
            failures.append(f"{task}: fewer than 2 candidates measured on every seed")
            continue
        names = list(signals[(task, labels[0])][0])
        averaged = {
            name: [float(np.mean([s[name] for s in signals[(task, label)]])) for label in labels]
            for name in names
        }
        means = [float(np.mean(errors[(task, label)])) for label in labels]
        outcomes.append(TaskOutcome(task, metrics[task], tuple(labels), averaged, means))
    return outcomes


def run_in_validation(config: PipelineConfig, parent_run_id: str) -> dict[str, Any]:
    """One candidate's full run, nested under the validation's MLflow run, no model
    registered."""
    return pipeline(config, parent_run_id=parent_run_id, register_model=False)


def _full_run(config: PipelineConfig, parent: str) -> dict[str, Any]:
    state = run_pipeline(run_in_validation, config, parent, return_state=True)
    result = state.result()  # raises the run's error if it failed
    if state.name == "Cached":
        result = reuse_or_rerun(run_in_validation, config, parent, result)
    return result


@flow(name="orca-recommend-validate", validate_parameters=True)
def validate_recommendations(
    config: RecommendValidationConfig, reports_dir: str = "reports"
) -> dict[str, Any]:
    """Recommend, fine-tune every candidate, and report how well each signal predicted."""
    storage.ensure_result_storage()
    started = time.perf_counter()
    parent = sweep_tracking.start_parent_run(
        "recommend-validation", config.label, str(runtime.flow_run.id), config.to_dict()
    )
    try:
        return _validate(config, reports_dir, parent, started)
    except BaseException as error:
        status = "KILLED" if stopping.is_stop(error) else "FAILED"
        recommend_runs.finish_run(parent, status, str(error))
        raise


def _validate(
    config: RecommendValidationConfig, reports_dir: str, parent: str, started: float
) -> dict[str, Any]:
    failures, rankings = [], {}
    # (task, candidate label) -> per-seed test errors and signals; a candidate counts only
    # where every seed measured it
    errors: dict[tuple[str, str], list[float]] = {}
    signals: dict[tuple[str, str], list[dict[str, float]]] = {}
    metrics: dict[str, str] = {}
    with temporary_settings(updates=heartbeats_off()), stopping.handle_stop_signals():
        for seed in range(config.seeds):
            for recommendation in config.recommendations(seed):
                task = recommendation.task
                ranking = recommend(recommendation)
                rankings[f"{task}/seed{seed}"] = ranking["mlflow_run_id"]
                measured = {(r["body"], r["proxy"]): r for r in ranking["rows"] if r["rank"]}
                for candidate in recommendation.plan().candidates:
                    key = (candidate.body, candidate.config.proxy.dataset)
                    label = f"{candidate.body} / {key[1]}"
                    where = f"{task} seed {seed}: {label}"
                    if key not in measured:
                        failures.append(f"{where}: its recommendation was not measured")
                        continue
                    try:
                        result = _full_run(candidate.config, parent)
                    except Exception as error:
                        if stopping.is_stop(error):
                            raise
                        failures.append(f"{where} ({run_label(candidate.config)}): {error}")
                        continue
                    metrics[task] = result["metric"]
                    value = float(result["value"])
                    oriented = value if result["lower_is_better"] else -value
                    errors.setdefault((task, label), []).append(oriented)
                    signals.setdefault((task, label), []).append(measured[key]["signals"])
    outcomes = _outcomes(config, errors, signals, metrics, failures)
    context = {
        "command": config.command(),
        "tasks": f"{len(outcomes)} with statistics of {len(config.task_names)}",
        "bodies": ", ".join(config.bodies) or "the defaults (orca.recommend.DEFAULT_BODIES)",
        "seeds": f"{config.seeds} (signals and test errors are means over seeds)",
        "machine": machine_description(),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "wall time": f"{time.perf_counter() - started:.0f} s",
        "validation run (MLflow)": parent,
    }
    written = recommend_runs.validation_report(outcomes, reports_dir, context, failures)
    sweep_tracking.log_report(parent, [written["report"], written["data"]])
    sweep_tracking.finish_parent_run(parent, sum(len(o.candidates) for o in outcomes), failures)
    return {
        **written,
        "validation_run_id": parent,
        "recommend_runs": rankings,
        "failures": failures,
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
