"""Progress: the rich bars of `orca run`, `bench` and `demo`, the listeners, and the stages'
Prefect artifacts."""

from __future__ import annotations

import io
import re

from rich.console import Console
from rich.progress import Progress

from cli.progress import ProgressView, progress_bars
from tasks.progress import ProgressEvent, StageProgress, listening, run_ended, stage_ended

ORCA_STAGES = ("ingest", "proxy", "align", "refine", "evaluate")


def terminal(width: int = 120) -> tuple[Console, io.StringIO]:
    stream = io.StringIO()
    return Console(file=stream, force_terminal=True, width=width), stream


def plain(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)


def rows(progress: Progress) -> dict[str, tuple[float, float | None, str]]:
    """Each row's (completed, total, detail) by its name."""
    return {
        task.description.strip(): (task.completed, task.total, task.fields["detail"])
        for task in progress.tasks
    }


def one_run(stages=ORCA_STAGES, fail: str | None = None) -> None:
    """The events of one run: ingest from the cache, 2 epochs per stage after it."""
    for stage in stages:
        if stage == "ingest":
            stage_ended(stage, "Cached")
            continue
        steps = StageProgress(stage, 2)
        steps.step(1)
        if stage == fail:
            stage_ended(stage, "Failed")
            return
        steps.step(2)
        stage_ended(stage, "Completed")


def test_one_run_shows_its_stages_and_each_stage_its_epochs():
    progress = Progress(console=terminal()[0])
    view = ProgressView(progress, stages=ORCA_STAGES, label="gunpoint/orca/seed0")
    assert rows(progress)["gunpoint/orca/seed0"] == (0, 5, "0/5 stages")
    with listening(view):
        stage_ended("ingest", "Cached")
        align = StageProgress("align", 4)
        align.step(1)
        shown = rows(progress)
        assert shown["gunpoint/orca/seed0"] == (1, 5, "1/5 stages")
        assert shown["ingest"] == (100, 100, "[green]Cached[/]")
        assert shown["align"] == (25, 100, "1/4 epochs")
        align.step(4)
        stage_ended("align", "Completed")
        StageProgress("refine", 3).step(1)
        stage_ended("refine", "Failed")
    shown = rows(progress)
    assert shown["align"] == (100, 100, "4/4 epochs [green]Completed[/]")
    assert shown["refine"][0] < 100 and shown["refine"][2] == "1/3 epochs [red]Failed[/]"
    assert shown["gunpoint/orca/seed0"] == (3, 5, "3/5 stages")


def test_a_sweep_counts_runs_and_starts_each_run_afresh():
    progress = Progress(console=terminal()[0])
    view = ProgressView(progress, runs=4)
    with listening(view):
        one_run()
        assert rows(progress)["runs"] == (0, 4, "0/4 runs")  # until the sweep says so
        run_ended("gunpoint/orca/seed0", "Completed")
        assert rows(progress)["runs"] == (1, 4, "1/4 runs")
        assert rows(progress)["run 1"] == (5, 5, "5/5 stages")  # learnt from the stages
        one_run(("ingest", "classical"))  # the next event starts run 2
        run_ended("gunpoint/knn/seed0", "Completed")
        shown = rows(progress)
        assert shown["runs"] == (2, 4, "2/4 runs") and shown["run 2"] == (2, 2, "2/2 stages")
        assert "align" not in shown and shown["classical"][2] == "2/2 epochs [green]Completed[/]"
        one_run(fail="align")  # a failed stage ends its run
        run_ended("gunpoint/fpt/seed0", "Failed")
        assert "refine" not in rows(progress)
        run_ended("ecg/orca/seed0", "Cached")  # a run in a worker process: no stage events
        assert rows(progress)["runs"] == (4, 4, "4/4 runs")
    view.finish()
    assert rows(progress)["runs"] == (4, 4, "4/4 runs")


def test_the_bars_are_drawn_on_a_terminal_and_finish_the_runs():
    console, stream = terminal()
    with progress_bars(True, runs=2, console=console) as view:
        assert view is not None
        one_run()  # the second run is not heard (a worker process): finished at the end
    drawn = plain(stream.getvalue())
    assert "2/2 runs" in drawn and "5/5 stages" in drawn and "2/2 epochs Completed" in drawn
    assert "━" in drawn


def test_no_bars_off_a_terminal_or_with_json():
    def drawn(console: Console, stream: io.StringIO, enabled: bool) -> str:
        with progress_bars(enabled, console=console) as view:
            assert view is None
            StageProgress("refine", 2).step(1)
            stage_ended("refine", "Completed")
        return stream.getvalue()

    stream = io.StringIO()
    assert drawn(Console(file=stream, force_terminal=False), stream, enabled=True) == ""
    assert drawn(*terminal(), enabled=False) == ""  # --json
    heard = []
    with listening(heard.append):
        with progress_bars(True, console=terminal()[0]):
            pass
        StageProgress("refine", 2).step(1)  # after the block the bars no longer listen
    assert len(heard) == 1


def test_log_lines_go_through_the_bars_display():
    import logging

    console, stream = terminal()
    # A rich log handler writing to the bars' terminal, as Prefect's console handler does.
    handler = logging.StreamHandler(io.StringIO())
    handler.console = log_console = Console(file=stream, force_terminal=True)
    logger = logging.getLogger("orca-test-progress")
    logger.addHandler(handler)
    try:
        with progress_bars(True, console=console):
            assert log_console.file is not stream  # printed above the bars
            log_console.print("a log line")
        assert log_console.file is stream  # given back
    finally:
        logger.removeHandler(handler)
    drawn = plain(stream.getvalue())
    assert "a log line" in drawn and drawn.index("a log line") < drawn.rindex("0/? stages")


def test_stage_progress_outside_a_run_notifies_without_an_artifact():
    heard: list[ProgressEvent] = []
    with listening(heard.append):
        steps = StageProgress("align", 4)
        steps.step(1)
        steps.step(9)  # clamped to the total
        steps.finish()  # e.g. after an early stop
    assert steps.artifact_id is None
    assert [(e.done, e.percent) for e in heard] == [(1, 25.0), (4, 100.0), (4, 100.0)]
    assert ProgressEvent("align", 0, 0).percent == 100.0  # nothing to count (epochs=0)


def test_a_failing_artifact_call_does_not_fail_the_stage(monkeypatch):
    import prefect.artifacts

    from tasks import progress

    def unreachable(*args, **kwargs):
        raise ConnectionError("Prefect API unreachable")

    monkeypatch.setattr(progress, "_in_task_run", lambda: True)
    monkeypatch.setattr(prefect.artifacts, "create_progress_artifact", unreachable)
    steps = StageProgress("refine", 2)
    steps.step(1)
    steps.finish()
    progress.flush_artifacts()  # the calls are made in the background
    assert steps.artifact_id is None and not steps._reporting


def test_align_and_refine_progress_artifacts_reach_100(prefect_harness, tiny_bert_dir):
    from prefect import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        ArtifactFilterType,
    )

    from flows.pipeline import pipeline
    from orca.config.pipeline import PipelineConfig

    overrides = {
        "proxy": {"max_examples": 60, "max_tokens": 16},
        "align": {"epochs": 2, "samples_per_class": 8},
        "refine": {"epochs": 2, "batch_size": 16, "lr": 3e-4},
    }
    config = PipelineConfig.for_task("gunpoint", backbone=str(tiny_bert_dir), overrides=overrides)
    result = pipeline(config)
    assert result["states"]["align"] == result["states"]["refine"] == "Completed"
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[result["flow_run_id"]]),
                type=ArtifactFilterType(any_=["progress"]),
            )
        )
    by_key = {artifact.key: artifact for artifact in artifacts}
    assert set(by_key) == {"orca-align-progress", "orca-refine-progress"}
    assert all(float(artifact.data) == 100.0 for artifact in artifacts)
    assert all(artifact.task_run_id is not None for artifact in artifacts)
    assert "Fine-tuning" in by_key["orca-refine-progress"].description
