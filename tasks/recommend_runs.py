"""`orca recommend`'s work: measure one candidate with the pipeline's own cached stages, and
record the ranking in MLflow.

`measure(config, body)` runs ingest, proxy and align through tasks/stage_runs.py, exactly
as the pipeline flow calls them for `config`: the cache records are the pipeline's, so a
later `orca run` with the same body, proxy and method finds them Cached. A candidate whose
stage fails is recorded as failed (its error in one line) and the others go on; a stop
request (orca.stopping) is not caught.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from mlflow import MlflowClient

from orca import stopping
from orca.config.pipeline import PipelineConfig
from orca.recommend import CandidateResult
from tasks import tracking
from tasks.stage_runs import align, ingest, proxy, stage_run


def _timed(seconds: dict[str, float], name: str, call: Callable[[], Any]) -> Any:
    started = time.perf_counter()
    try:
        return call()
    finally:
        seconds[name] = round(time.perf_counter() - started, 3)


def measure(config: PipelineConfig, body: str) -> CandidateResult:
    """Ingest, proxy features and alignment for one candidate; its distances and times."""
    seconds: dict[str, float] = {}
    described = {
        "body": body,
        "backbone": config.backbone,
        "method": config.method,
        "proxy": config.proxy.dataset,
        "align_epochs": config.align_epochs,
        "metric": config.align.metric,
    }
    try:
        with stage_run(config) as run:
            dataset = _timed(seconds, "ingest", lambda: ingest(config))
            features = _timed(seconds, "proxy", lambda: proxy(config))
            embedder = _timed(seconds, "align", lambda: align(config, dataset, features))
    except Exception as error:  # one candidate's failure is its row's
        if stopping.is_stop(error):
            raise
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        return CandidateResult(
            **described, status="failed", seconds=seconds, error=first_line[:500]
        )
    distances = embedder["distances"]
    return CandidateResult(
        **described,
        distance_before=distances[0],
        distance_after=distances[-1],
        seconds=seconds,
        states=dict(run.states),
    )


def skipped(config: PipelineConfig, body: str, reason: str) -> CandidateResult:
    """The row of a candidate that was not started."""
    return CandidateResult(
        body=body,
        backbone=config.backbone,
        method=config.method,
        proxy=config.proxy.dataset,
        align_epochs=config.align_epochs,
        metric=config.align.metric,
        status="skipped",
        error=reason,
    )


def start_run(task: str, flow_run_id: str | None, candidates: int) -> str:
    """The recommendation's MLflow run, tagged orca.kind=recommend."""
    client = MlflowClient()
    run = client.create_run(
        tracking.experiment_id(client),
        run_name=f"{task}-recommend",
        tags={
            "orca.kind": "recommend",
            "orca.task": task,
            "prefect.flow_run_id": str(flow_run_id),
        },
    )
    client.log_param(run.info.run_id, "candidates", candidates)
    return run.info.run_id


def log_ranking(run_id: str, ranking: dict[str, Any], markdown: str) -> None:
    """The ranking as ranking.json and ranking.md artifacts, the best candidate as tags,
    and each measured candidate's distances as metrics (step = its rank)."""
    client = MlflowClient()
    client.log_text(run_id, json.dumps(ranking, indent=2), "recommend/ranking.json")
    client.log_text(run_id, markdown, "recommend/ranking.md")
    best = ranking["best"]
    if best is not None:
        client.set_tag(run_id, "orca.recommend.best", f"{best['body']} / {best['proxy']}")
    for row in ranking["rows"]:
        if row["rank"] is not None:
            client.log_metric(run_id, "distance_after", row["distance_after"], step=row["rank"])
            client.log_metric(run_id, "distance_before", row["distance_before"], step=row["rank"])


def finish_run(run_id: str, status: str, error: str | None = None) -> None:
    tracking.finish_run(run_id, status, error)
