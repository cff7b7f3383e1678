"""The recommend flow: rank (body, proxy) candidates for one task by their alignment distance.

Each candidate is a full PipelineConfig, the one `orca run` would use for that body, proxy
and method; the flow runs its cheap stages (ingest, proxy features, align) with the
pipeline's cached tasks (tasks/recommend_runs.py), ranks the candidates (orca.recommend),
and logs the ranking to an MLflow run tagged orca.kind=recommend (ranking.json and
ranking.md artifacts). With `budget_s`, no candidate starts once that many seconds have
passed; the rest are reported as skipped.
"""

from __future__ import annotations

import time
from typing import Any

from prefect import flow, runtime

from orca import stopping
from orca.config.pipeline import PipelineConfig
from orca.recommend import RANK_RULE, markdown, rank
from tasks import recommend_runs


@flow(name="orca-recommend", validate_parameters=True)
def recommend(
    configs: list[PipelineConfig],
    bodies: list[str],
    budget_s: float | None = None,
    notes: list[str] | None = None,
) -> dict[str, Any]:
    """Measure each candidate (`configs[i]` with its --bodies token `bodies[i]`) and rank them."""
    if len(configs) != len(bodies) or not configs:
        raise ValueError("recommend: give one body token per config, and at least one config")
    task = configs[0].task
    run_id = recommend_runs.start_run(task, runtime.flow_run.id, len(configs))
    started = time.perf_counter()
    try:
        results = []
        for config, body in zip(configs, bodies, strict=True):
            elapsed = time.perf_counter() - started
            if budget_s is not None and elapsed >= budget_s:
                reason = f"time budget of {budget_s:g} s spent ({elapsed:.0f} s)"
                results.append(recommend_runs.skipped(config, body, reason))
                continue
            results.append(recommend_runs.measure(config, body))
        rows = rank(results)
        measured = [row for row in rows if row["rank"] is not None]
        ranking = {
            "task": task,
            "rule": RANK_RULE,
            "rows": rows,
            "best": measured[0] if measured else None,
            "notes": list(notes or ()),
            "mlflow_run_id": run_id,
            "flow_run_id": str(runtime.flow_run.id),
        }
        recommend_runs.log_ranking(run_id, ranking, markdown(task, rows, ranking["notes"]))
    except BaseException as error:
        status = "KILLED" if stopping.is_stop(error) else "FAILED"
        recommend_runs.finish_run(run_id, status, str(error))
        raise
    recommend_runs.finish_run(run_id, "FINISHED")
    return ranking
