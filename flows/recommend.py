"""The recommend flow: rank (body, proxy) candidates for one task by their alignment distance.

Its parameter is a RecommendConfig (orca/config/recommend.py), which plans one
PipelineConfig per candidate: the one `orca run` would use for that body, proxy and method.
The flow runs each candidate's cheap stages (ingest, proxy features, align) with the
pipeline's cached tasks (tasks/recommend_runs.py), ranks the candidates (orca.recommend), and
logs the ranking to an MLflow run tagged orca.kind=recommend (ranking.json and ranking.md
artifacts). With `budget_s`, no candidate starts once that many seconds have passed; the rest
are reported as skipped.
"""

from __future__ import annotations

import time
from typing import Any

from prefect import flow, runtime

from orca import stopping
from orca.config.recommend import RecommendConfig
from orca.recommend import RANK_RULE, markdown, rank
from tasks import recommend_runs


@flow(name="orca-recommend", validate_parameters=True)
def recommend(config: RecommendConfig) -> dict[str, Any]:
    """Measure every candidate `config` plans, and rank them."""
    plan = config.plan()
    task = plan.candidates[0].config.task
    run_id = recommend_runs.start_run(task, runtime.flow_run.id, config, len(plan.candidates))
    started = time.perf_counter()
    try:
        results = []
        for candidate in plan.candidates:
            elapsed = time.perf_counter() - started
            if config.budget_s is not None and elapsed >= config.budget_s:
                reason = f"time budget of {config.budget_s:g} s spent ({elapsed:.0f} s)"
                results.append(recommend_runs.skipped(candidate.config, candidate.body, reason))
                continue
            results.append(
                recommend_runs.measure(candidate.config, candidate.body, config.measured_signals)
            )
        rows = rank(results, by=config.rank_by)
        commands = {(c.body, c.config.proxy.dataset): c.run_command for c in plan.candidates}
        for row in rows:
            row["run_command"] = commands[(row["body"], row["proxy"])]
        measured = [row for row in rows if row["rank"] is not None]
        ranking = {
            "task": task,
            "rule": RANK_RULE,
            "rank_by": config.rank_by,
            "rows": rows,
            "best": measured[0] if measured else None,
            "notes": list(plan.notes),
            "mlflow_run_id": run_id,
            "flow_run_id": str(runtime.flow_run.id),
        }
        recommend_runs.log_ranking(
            run_id, ranking, markdown(task, rows, ranking["notes"], config.rank_by)
        )
    except BaseException as error:
        status = "KILLED" if stopping.is_stop(error) else "FAILED"
        recommend_runs.finish_run(run_id, status, str(error))
        raise
    recommend_runs.finish_run(run_id, "FINISHED")
    return ranking
