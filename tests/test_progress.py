"""Progress: the `orca run` bar's lines, the listeners, and the stages' Prefect artifacts."""

from __future__ import annotations

import io

from cli.progress import ProgressBar, progress_bar, render
from tasks.progress import ProgressEvent, StageProgress, listening, stage_ended

STAGES = ("ingest", "proxy", "align", "refine", "evaluate")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_render_draws_steps_and_stage_ends():
    assert render(ProgressEvent("align", 2, 4), 3, 5, width=8) == (
        "[3/5] align    [####----]  50%  2/4 epochs"
    )
    assert render(ProgressEvent("proxy", 120, 120, "examples"), 2, 5, width=8) == (
        "[2/5] proxy    [########] 100%  120/120 examples"
    )
    assert render(ProgressEvent("ingest", state="Cached"), 1, 5, width=8) == (
        "[1/5] ingest   [########] 100%  Cached"
    )
    assert render(ProgressEvent("refine", state="Failed"), 4, 5) == "[4/5] refine   Failed"
    assert render(ProgressEvent("refine", 1, 3), 4, 5, width=3) == (
        "[4/5] refine   [#--]  33%  1/3 epochs"
    )


def test_the_bar_writes_one_line_per_change_in_stage_order():
    stream = Terminal()
    bar = ProgressBar(stream, STAGES)
    for event in (
        ProgressEvent("ingest", state="Cached"),
        ProgressEvent("refine", 1, 2),
        ProgressEvent("refine", 2, 2),
        ProgressEvent("refine", 2, 2),  # the same line again: skipped
        ProgressEvent("not-a-stage", 1, 2),  # not in the pipeline: ignored
        ProgressEvent("refine", state="Completed"),
    ):
        bar(event)
    lines = stream.getvalue().splitlines()
    assert [line.split()[0] for line in lines] == ["[1/5]", "[4/5]", "[4/5]", "[4/5]"]
    assert lines[1].endswith("1/2 epochs") and lines[-1].endswith("Completed")


def test_the_bar_listens_only_on_a_terminal_and_without_json():
    def events_written(stream, enabled: bool) -> str:
        with progress_bar(enabled, stream):
            StageProgress("refine", 2).step(1)
            stage_ended("refine", "Completed")
        StageProgress("refine", 2).step(2)  # after the block: nobody listens
        return stream.getvalue()

    assert events_written(io.StringIO(), enabled=True) == ""  # not a terminal
    assert events_written(Terminal(), enabled=False) == ""  # --json
    written = events_written(Terminal(), enabled=True).splitlines()
    assert len(written) == 2 and written[0].endswith("1/2 epochs")


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
