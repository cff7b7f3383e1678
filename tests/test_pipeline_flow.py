"""End to end: the five-stage flow under Prefect, its cache, and its MLflow record."""

from __future__ import annotations

import shutil

import pytest
from mlflow import MlflowClient

from orca.config.pipeline import PipelineConfig
from runtime.state import StateDir
from tasks import stages
from tasks.caching import stage_dir, stage_key

TINY = {
    "proxy": {"max_examples": 120, "max_tokens": 16},
    "align": {"epochs": 2, "samples_per_class": 8, "lr": 3e-3},
    "refine": {"epochs": 2, "batch_size": 16},
}


@pytest.fixture(scope="module")
def tiny_config(tiny_bert_dir) -> PipelineConfig:
    return PipelineConfig.for_task("gunpoint", backbone=str(tiny_bert_dir), overrides=TINY)


def test_ingest_task_writes_stratified_arrow_splits():
    reference = stages.ingest.fn("gunpoint", 0)
    sizes = {name: split["rows"] for name, split in reference["splits"].items()}
    assert sizes == {"train": 40, "validation": 10, "test": 150}
    from orca.data.arrow_io import read_split

    validation = read_split(reference["splits"]["validation"]["path"])
    assert sorted(validation.y.tolist()) == [0] * 5 + [1] * 5  # stratified
    assert validation.metadata["source"].startswith("aeon")
    assert (
        str(
            stage_dir(
                "ingest",
                {"task_name": "gunpoint", "seed": 0, "data_version": "", "train_fraction": 1.0},
            )
        )
        in (reference["splits"]["train"]["path"])
    )


def test_stage_keys_follow_content_not_paths():
    dataset = {"fingerprint": "abc", "splits": {"train": {"path": "/one/place"}}}
    moved = {"fingerprint": "abc", "splits": {"train": {"path": "/another/place"}}}
    base = {"task_name": "t", "dataset": dataset, "seed": 0}
    assert stage_key("refine", base) == stage_key("refine", {**base, "dataset": moved})
    assert stage_key("refine", base) != stage_key("refine", {**base, "seed": 1})
    changed = {**base, "dataset": {**dataset, "fingerprint": "abd"}}
    assert stage_key("refine", base) != stage_key("refine", changed)


def _run(config):
    from flows.pipeline import pipeline

    return pipeline(config)


def test_pipeline_end_to_end_caching_and_tracking(prefect_harness, tiny_config):
    first = _run(tiny_config)
    # Ingest depends only on the task, so an earlier test in the session may have cached it.
    assert first["states"]["ingest"] in ("Completed", "Cached")
    assert {k: v for k, v in first["states"].items() if k != "ingest"} == dict.fromkeys(
        ("proxy", "align", "refine", "evaluate"), "Completed"
    )
    assert first["metric"] == "error_rate" and 0.0 <= first["value"] <= 100.0

    # Same command again: nothing recomputed.
    second = _run(tiny_config)
    assert set(second["states"].values()) == {"Cached"}
    assert second["value"] == first["value"]
    assert second["registered_model"] == first["registered_model"]

    # Only a fine-tuning hyperparameter changes: only refine and evaluate run.
    changed = tiny_config.replace(refine=tiny_config.refine.replace(lr=3e-4))
    third = _run(changed)
    assert third["states"] == {
        "ingest": "Cached",
        "proxy": "Cached",
        "align": "Cached",
        "refine": "Completed",
        "evaluate": "Completed",
    }

    # Deleted artifacts are recomputed, not handed downstream as dangling paths.
    align_dirs = StateDir.from_env().artifacts / "align"
    shutil.rmtree(align_dirs)
    fourth = _run(tiny_config)
    assert fourth["states"]["align"] == "Completed"
    assert fourth["states"]["ingest"] == "Cached"
    assert fourth["value"] == first["value"]  # deterministic recomputation

    client = MlflowClient()
    run = client.get_run(first["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.tags["prefect.flow_run_id"] == first["flow_run_id"]
    # Run artifacts (the registered model) go to the state directory, not ./mlruns.
    assert run.info.artifact_uri.startswith(StateDir.from_env().mlflow_artifacts.as_uri())
    assert run.data.params["refine.lr"] == str(tiny_config.refine.lr)
    assert run.data.params["align.epochs"] == "2"
    assert run.data.tags["stage.align"] == "Completed"
    distances = client.get_metric_history(run.info.run_id, "align_distance")
    assert [m.step for m in distances] == [0, 1, 2]
    assert distances[-1].value < distances[0].value
    assert len(client.get_metric_history(run.info.run_id, "train_loss")) == 2
    assert run.data.metrics["test_error_rate"] == pytest.approx(first["value"])
    cached_run = client.get_run(second["mlflow_run_id"])
    assert cached_run.data.tags["stage.refine"] == "Cached"
    assert len(client.get_metric_history(cached_run.info.run_id, "align_distance")) == 3
    name, version = first["registered_model"].split("/")
    assert client.get_model_version(name, version).tags["fingerprint"]


def test_a_failing_stage_marks_the_mlflow_run_failed(prefect_harness, tiny_config, monkeypatch):
    from orca.stages import refine as refine_stage

    def broken(*args, **kwargs):
        raise RuntimeError("injected refine failure")

    monkeypatch.setattr(refine_stage, "refine", broken)
    config = tiny_config.replace(refine=tiny_config.refine.replace(lr=7e-4))
    with pytest.raises(RuntimeError, match="injected refine failure"):
        _run(config)
    client = MlflowClient()
    runs = client.search_runs(
        [client.get_experiment_by_name("orca").experiment_id],
        filter_string="attributes.status = 'FAILED'",
    )
    assert runs and "injected refine failure" in runs[0].data.tags["error"]
    failed = runs[0]
    assert failed.data.tags["stage.align"] in ("Completed", "Cached")  # earlier stages kept
    # What the finished stages recorded is kept: the alignment curve, the stage artifacts.
    assert len(client.get_metric_history(failed.info.run_id, "align_distance")) == 3
    assert any((StateDir.from_env().artifacts / "align").iterdir())
    # The Prefect flow run is Failed, with the exception in its logs.
    from prefect import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()
    flow_run_id = failed.data.tags["prefect.flow_run_id"]
    with get_client(sync_client=True) as prefect:
        assert prefect.read_flow_run(flow_run_id).state.name == "Failed"
        logs = prefect.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
    assert any("RuntimeError: injected refine failure" in log.message for log in logs), [
        log.message[:200] for log in logs
    ]


def test_bad_flow_parameters_are_rejected_before_any_work(prefect_harness):
    from flows.pipeline import pipeline

    with pytest.raises(Exception, match=r"refine\.lr"):
        pipeline(config={"task": "gunpoint", "backbone": "minilm-l6", "refine": {"lr": -1.0}})
