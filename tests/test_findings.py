"""The paper's findings checked on hand-made comparisons, and RESULTS.md around a report."""

from __future__ import annotations

import pytest

from orca.reporting.comparison import summarise
from orca.reporting.findings import (
    HELD,
    NOT_HELD,
    NOT_TESTED,
    check_findings,
    findings_markdown,
    head_to_head,
    mean_ranks,
)
from orca.reporting.results import write_results


def _runs(table: dict[str, dict[str, float]], lower: dict[str, bool]) -> list[dict]:
    return [
        {
            "task": task,
            "method": method,
            "seed": 0,
            "metric": "error_rate" if lower[task] else "accuracy",
            "value": value,
            "lower_is_better": lower[task],
        }
        for task, row in table.items()
        for method, value in row.items()
    ]


# Three tasks; "acc" is higher-is-better, so its ranking flips.
TABLE = {
    "a": {"orca": 0.10, "orca-mmd": 0.20, "no-align": 0.30, "fpt": 0.40, "scratch": 0.50},
    "b": {"orca": 0.30, "orca-mmd": 0.10, "no-align": 0.20, "fpt": 0.20, "scratch": 0.60},
    "acc": {"orca": 0.90, "orca-mmd": 0.80, "no-align": 0.70, "fpt": 0.60, "scratch": 0.95},
}
LOWER = {"a": True, "b": True, "acc": False}


def test_head_to_head_and_mean_ranks_by_hand():
    summary = summarise(_runs(TABLE, LOWER))
    assert head_to_head(summary, "orca", "no-align") == (2, 1, 0)
    assert head_to_head(summary, "no-align", "fpt") == (2, 0, 1)  # b is a tie
    ranks = mean_ranks(summary, ["orca", "orca-mmd"])
    assert ranks == pytest.approx({"orca": (1 + 2 + 1) / 3, "orca-mmd": (2 + 1 + 2) / 3})
    # On b, no-align and fpt tie for 2nd/3rd: both get rank 2.5.
    ranks = mean_ranks(summary, ["orca-mmd", "no-align", "fpt"])
    assert ranks == pytest.approx(
        {"orca-mmd": 1.0, "no-align": (2 + 2.5 + 2) / 3, "fpt": (3 + 2.5 + 3) / 3}
    )


def test_verdicts_follow_the_numbers():
    verdicts = {v.claim.split(" (")[0]: v for v in check_findings(summarise(_runs(TABLE, LOWER)))}
    # All methods: orca ranks 1, 4, 2 (mean 2.33); orca-mmd 2, 1, 3 (mean 2.0) is best.
    aggregate = verdicts["ORCA has the best aggregate performance over the tasks"]
    assert aggregate.status == NOT_HELD
    assert "orca-mmd 2.00, orca 2.33" in aggregate.evidence
    assert verdicts["OTDD is the best alignment metric in aggregate"].status == HELD
    assert verdicts["Full fine-tuning beats partial fine-tuning"].status == HELD
    assert verdicts["Embedder training"].status == HELD  # orca beats no-align on 2 of 3
    pretraining = verdicts["The pretrained body beats the same architecture trained from scratch"]
    assert pretraining.status == HELD and "scratch on 1" in pretraining.evidence
    assert verdicts["The pretraining modality matters"].status == NOT_TESTED

    flipped = {task: dict(row) for task, row in TABLE.items()}
    flipped["a"]["orca"], flipped["a"]["no-align"] = 0.35, 0.05
    verdicts = {v.claim.split(" (")[0]: v for v in check_findings(summarise(_runs(flipped, LOWER)))}
    assert verdicts["Embedder training"].status == NOT_HELD
    assert verdicts["ORCA has the best aggregate performance over the tasks"].status == NOT_HELD


def test_findings_need_their_methods():
    only = {task: {"orca": row["orca"], "scratch": row["scratch"]} for task, row in TABLE.items()}
    verdicts = check_findings(summarise(_runs(only, LOWER)))
    by_claim = {v.claim.split(" (")[0]: v for v in verdicts}
    assert by_claim["OTDD is the best alignment metric in aggregate"].status == NOT_TESTED
    assert by_claim["Full fine-tuning beats partial fine-tuning"].status == NOT_TESTED
    assert (
        "needs methods no-align and fpt"
        in by_claim["Full fine-tuning beats partial fine-tuning"].evidence
    )
    table = findings_markdown(verdicts)
    assert table.count("\n") == len(verdicts) + 2


def test_results_file_wraps_the_report(tmp_path):
    report = tmp_path / "comparison.md"
    report.write_text(
        "# ORCA comparison\n- **date:** old\n- **benchmark run:** abc\n| task | metric |\n"
    )
    out = write_results(tmp_path / "RESULTS.md", report, {"wall time": "12 s", "date": "today"})
    text = out.read_text()
    assert text.startswith("# ORCA on the embedded demo suite\n")
    assert "- **wall time:** 12 s" in text and "| task | metric |" in text
    assert "# ORCA comparison" not in text
    assert "old" not in text and "- **benchmark run:** abc" in text  # context replaces date
