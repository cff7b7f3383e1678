"""The benchmark and compare flows end to end on a tiny body: nested MLflow runs, shared
stages through the cache, the report files, Prefect artifacts and the champion alias."""

from __future__ import annotations

import pytest
from mlflow import MlflowClient

from orca.config.sweep import SweepConfig
from orca.registry import UnknownNameError

TINY = {
    "proxy": {"max_examples": 60, "max_tokens": 16},
    "align": {"epochs": 1, "samples_per_class": 8},
    "refine": {"epochs": 1, "batch_size": 16},
}


def test_bad_benchmark_configs_fail_before_any_run():
    with pytest.raises(UnknownNameError, match="unknown suite 'dmeo'; valid suites: demo"):
        SweepConfig(suite="dmeo")
    with pytest.raises(UnknownNameError, match="methods: unknown method 'orcaa'"):
        SweepConfig(tasks=("gunpoint",), methods=("orcaa",))
    with pytest.raises(ValueError, match="needs a suite, tasks or task_files"):
        SweepConfig()


def test_runs_are_task_major_and_cover_every_method_and_seed():
    config = SweepConfig(tasks=("gunpoint",), methods=("orca", "scratch"), seeds=2)
    labels = [(c.task, c.seed, c.method) for c in config.runs()]
    assert labels == [
        ("gunpoint", 0, "orca"),
        ("gunpoint", 0, "scratch"),
        ("gunpoint", 1, "orca"),
        ("gunpoint", 1, "scratch"),
    ]


def test_benchmark_then_compare(prefect_harness, tiny_bert_dir, tmp_path):
    from prefect.artifacts import Artifact

    from flows.compare import compare
    from flows.sweep import sweep

    config = SweepConfig(
        tasks=("gunpoint",),
        methods=("orca", "no-align"),
        seeds=2,
        backbone=str(tiny_bert_dir),
        overrides=TINY,
    )
    out = sweep(config)
    assert out["failures"] == [] and len(out["results"]) == 4
    # Ingest and proxy features ran once; every later run found them in the cache.
    later = [r["states"] for r in out["results"][1:]]
    assert all(s["ingest"] == "Cached" and s["proxy"] == "Cached" for s in later)
    client = MlflowClient()
    children = client.search_runs(
        [client.get_run(out["sweep_run_id"]).info.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{out['sweep_run_id']}'",
    )
    assert len(children) == 4
    assert all(r.data.tags["orca.model_path"].endswith("model.safetensors") for r in children)

    result = compare(out["sweep_run_id"], reports_dir=str(tmp_path / "reports"))
    rows = {(r["task"], r["method"]): r for r in result["rows"]}
    assert set(rows) == {("gunpoint", "orca"), ("gunpoint", "no-align")}
    assert all(r["n_seeds"] == 2 for r in rows.values())
    markdown = (tmp_path / "reports" / "comparison.md").read_text()
    assert "| gunpoint | error_rate ↓ |" in markdown
    assert (tmp_path / "reports" / "comparison-profile.png").stat().st_size > 1000
    name, version = result["champions"]["gunpoint"].split("/")
    assert str(client.get_model_version_by_alias(name, "champion").version) == version
    assert Artifact.get("orca-comparison") is not None
    artifacts = client.list_artifacts(out["sweep_run_id"], "report")
    assert {a.path.split("/")[-1] for a in artifacts} >= {"comparison.md", "comparison.csv"}


def test_ablations_flow_writes_its_three_sections(prefect_harness, tiny_bert_dir, tmp_path):
    from flows.ablations import ablations
    from orca.config.ablation import AblationConfig

    config = AblationConfig(
        task="gunpoint",
        align_epochs=(0, 1),
        train_fractions=(0.5, 1.0),
        limited_methods=("orca",),
        image_task="digits",
        text_backbone=str(tiny_bert_dir),
        vision_backbone="test-tiny-vit",  # no weights offline: reported as not run
        seeds=1,
        overrides=TINY,
    )
    out = ablations(config, reports_dir=str(tmp_path))
    text = (tmp_path / "ablations.md").read_text()
    assert "## Alignment convergence" in text and "| 0 |" in text and "| 1 |" in text
    assert "## Data-limited regime" in text and "| 0.5 |" in text
    assert f"| digits | {tiny_bert_dir} |" in text
    assert f"| gunpoint | {tiny_bert_dir} |" in text  # finding 5 both ways: a 1D task too
    assert "**test-tiny-vit not run:** no pretrained weights" in text
    assert set(out["skipped"]) == {"test-tiny-vit"}
    for png in ("ablation-alignment.png", "ablation-data-limited.png"):
        assert (tmp_path / png).read_bytes()[:4] == b"\x89PNG"


def test_a_finished_benchmark_reruns_from_the_run_cache(prefect_harness, tiny_bert_dir, tmp_path):
    import os
    import shutil

    from flows.compare import compare
    from flows.sweep import sweep

    config = SweepConfig(
        tasks=("covid3month",),
        methods=("no-align", "fpt"),
        seeds=1,
        backbone=str(tiny_bert_dir),
        overrides=TINY,
    )
    first = sweep(config)
    assert first["failures"] == [] and not any("reused_from" in r for r in first["results"])

    second = sweep(config)
    assert second["failures"] == []
    by_method = {r["method"]: r for r in second["results"]}
    for original in first["results"]:
        reused = by_method[original["method"]]
        assert reused["reused_from"] == original["mlflow_run_id"]
        assert reused["value"] == original["value"]
        assert set(reused["states"].values()) == {"Cached"}
    client = MlflowClient()
    children = client.search_runs(
        [client.get_run(second["sweep_run_id"]).info.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{second['sweep_run_id']}'",
    )
    assert sorted(c.data.tags["orca.reused_from"] for c in children) == sorted(
        r["mlflow_run_id"] for r in first["results"]
    )
    rows = compare(second["sweep_run_id"], reports_dir=str(tmp_path / "reports"))["rows"]
    assert {(r["method"], r["mean"]) for r in rows} == {
        (r["method"], r["value"]) for r in first["results"]
    }

    # A deleted model (its refine stage directory): that run goes through the pipeline
    # again (refine recomputes, the earlier stages come from the stage cache); the other
    # run is reused.
    shutil.rmtree(os.path.dirname(by_method["fpt"]["model_path"]))
    third = sweep(config)
    by_method = {r["method"]: r for r in third["results"]}
    assert third["failures"] == [] and "reused_from" in by_method["no-align"]
    assert "reused_from" not in by_method["fpt"]
    assert by_method["fpt"]["states"]["ingest"] == "Cached"
    assert by_method["fpt"]["states"]["refine"] == "Completed"
    assert os.path.isfile(by_method["fpt"]["model_path"])
