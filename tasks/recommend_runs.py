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
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Param
from prefect import task
from prefect.artifacts import create_markdown_artifact

from orca import stopping
from orca.config.base import flatten
from orca.config.pipeline import PipelineConfig
from orca.config.recommend import RecommendConfig
from orca.config.stages import AlignConfig
from orca.recommend import CandidateResult
from orca.recommend_signals import (
    COMPUTED,
    RECORD_SIGNALS,
    from_align_record,
    measure_signals,
)
from orca.recommend_validation import TaskOutcome
from orca.reporting.recommend_validation import write_validation_report
from tasks import tracking
from tasks.caching import stage_cache_policy
from tasks.stage_runs import align, ingest, proxy, stage_run
from tasks.stages import GPU_TAGS, STAGE_OPTIONS


def _timed(seconds: dict[str, float], name: str, call: Callable[[], Any]) -> Any:
    started = time.perf_counter()
    try:
        return call()
    finally:
        seconds[name] = round(time.perf_counter() - started, 3)


@task(
    name="recommend-signals",
    cache_policy=stage_cache_policy("signals", writes_outputs=False),
    tags=GPU_TAGS,
    **STAGE_OPTIONS,
)
def computed_signals(
    names: list[str],
    task_name: str,
    backbone: str,
    dataset: dict[str, Any],
    proxy: dict[str, Any],
    embedder: dict[str, Any],
    align_config: AlignConfig,
    seed: int,
    pretrained: bool,
    device: str = "cpu",
) -> dict[str, float]:
    """The signals of orca.recommend_signals that need the model (probe, otdd_kmeans), from
    the candidate's stage outputs; cached by their fingerprints like a stage."""
    return measure_signals(
        names,
        task_name=task_name,
        backbone=backbone,
        dataset=dataset,
        proxy=proxy,
        embedder=embedder,
        align_config=align_config,
        seed=seed,
        pretrained=pretrained,
        device=device,
    )


def _signals(
    run: Any,
    config: PipelineConfig,
    names: tuple[str, ...],
    dataset: dict[str, Any],
    features: dict[str, Any],
    embedder: dict[str, Any],
) -> dict[str, float]:
    values = from_align_record(embedder["distances"])
    wanted = [name for name in names if name in COMPUTED]
    if wanted:
        state = computed_signals(
            wanted,
            task_name=config.task,
            backbone=config.backbone,
            dataset=dataset,
            proxy=features,
            embedder=embedder,
            align_config=config.align,
            seed=config.seed,
            pretrained=config.pretrained_body,
            device=config.resolved_device,
            return_state=True,
        )
        run.states["signals"] = state.name
        values.update(state.result())  # raises the computation's error if it failed
    return {name: values[name] for name in dict.fromkeys((*RECORD_SIGNALS, *names))}


def measure(config: PipelineConfig, body: str, signals: tuple[str, ...] = ()) -> CandidateResult:
    """Ingest, proxy features and alignment for one candidate, then the extra `signals`
    (orca.recommend_signals); its distances, signals and times."""
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
            if any(name in COMPUTED for name in signals):  # timed where there is work
                values = _timed(
                    seconds,
                    "signals",
                    lambda: _signals(run, config, signals, dataset, features, embedder),
                )
            else:
                values = _signals(run, config, signals, dataset, features, embedder)
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
        signals=values,
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


def start_run(task: str, flow_run_id: str | None, config: RecommendConfig, candidates: int) -> str:
    """The recommendation's MLflow run, tagged orca.kind=recommend, its config as params."""
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
    params = {**flatten(config.to_dict()), "candidates": candidates}
    client.log_batch(run.info.run_id, params=[Param(k, str(v)) for k, v in params.items()])
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


@task(name="write-recommend-validation", persist_result=False, cache_policy=None)
def validation_report(
    outcomes: list[TaskOutcome],
    reports_dir: str,
    context: dict[str, Any],
    failures: list[str],
) -> dict[str, Any]:
    """RECOMMEND-VALIDATION.md and its JSON under `reports_dir`, and the report as a Prefect
    markdown artifact."""
    written = write_validation_report(outcomes, reports_dir, context, failures)
    create_markdown_artifact(
        key="orca-recommend-validation", markdown=Path(written["report"]).read_text()
    )
    return written
