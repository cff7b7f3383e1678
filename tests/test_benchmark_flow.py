"""The benchmark and compare flows end to end on a tiny body: nested MLflow runs, shared
stages through the cache, the report files, Prefect artifacts and the champion alias."""

from __future__ import annotations

import pytest
from mlflow import MlflowClient

from orca.benchmark_config import BenchmarkConfig
from orca.registry import UnknownNameError

TINY = {
    "proxy": {"max_examples": 60, "max_tokens": 16},
    "align": {"epochs": 1, "samples_per_class": 8},
    "refine": {"epochs": 1, "batch_size": 16},
}


def test_bad_benchmark_configs_fail_before_any_run():
    with pytest.raises(UnknownNameError, match="unknown suite 'dmeo'; valid suites: demo"):
        BenchmarkConfig(suite="dmeo")
    with pytest.raises(UnknownNameError, match="methods: unknown method 'orcaa'"):
        BenchmarkConfig(tasks=("gunpoint",), methods=("orcaa",))
    with pytest.raises(ValueError, match="needs a suite, tasks or task_files"):
        BenchmarkConfig()


def test_runs_are_task_major_and_cover_every_method_and_seed():
    config = BenchmarkConfig(tasks=("gunpoint",), methods=("orca", "scratch"), seeds=2)
    labels = [(c.task, c.seed, c.method) for c in config.runs()]
    assert labels == [
        ("gunpoint", 0, "orca"),
        ("gunpoint", 0, "scratch"),
        ("gunpoint", 1, "orca"),
        ("gunpoint", 1, "scratch"),
    ]


def test_benchmark_then_compare(prefect_harness, tiny_bert_dir, tmp_path):
    from prefect.artifacts import Artifact

    from flows.benchmark import benchmark
    from flows.compare import compare

    config = BenchmarkConfig(
        tasks=("gunpoint",),
        methods=("orca", "no-align"),
        seeds=2,
        backbone=str(tiny_bert_dir),
        overrides=TINY,
    )
    out = benchmark(config)
    assert out["failures"] == [] and len(out["results"]) == 4
    # Ingest and proxy features ran once; every later run found them in the cache.
    later = [r["stages"] for r in out["results"][1:]]
    assert all(s["ingest"] == "Cached" and s["proxy"] == "Cached" for s in later)
    client = MlflowClient()
    children = client.search_runs(
        [client.get_run(out["benchmark_run_id"]).info.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{out['benchmark_run_id']}'",
    )
    assert len(children) == 4
    assert all(r.data.tags["orca.model_path"].endswith("model.safetensors") for r in children)

    result = compare(out["benchmark_run_id"], reports_dir=str(tmp_path / "reports"))
    rows = {(r["task"], r["method"]): r for r in result["rows"]}
    assert set(rows) == {("gunpoint", "orca"), ("gunpoint", "no-align")}
    assert all(r["n_seeds"] == 2 for r in rows.values())
    markdown = (tmp_path / "reports" / "comparison.md").read_text()
    assert "| gunpoint | error_rate ↓ |" in markdown
    assert (tmp_path / "reports" / "comparison-profile.png").stat().st_size > 1000
    name, version = result["champions"]["gunpoint"].split("/")
    assert str(client.get_model_version_by_alias(name, "champion").version) == version
    assert Artifact.get("orca-comparison") is not None
    artifacts = client.list_artifacts(out["benchmark_run_id"], "report")
    assert {a.path.split("/")[-1] for a in artifacts} >= {"comparison.md", "comparison.csv"}
