"""The validation statistics (orca.recommend_validation) against scipy and hand-computed
cases, and the report they make."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import spearmanr

from orca.recommend_validation import (
    TaskOutcome,
    average_ranks,
    evaluate_signal,
    spearman,
)
from orca.reporting.recommend_validation import (
    analyse,
    rebuild,
    verdict,
    write_validation_report,
)


@pytest.mark.parametrize("seed", range(5))
def test_spearman_matches_scipy_with_and_without_ties(seed):
    generator = np.random.default_rng(seed)
    x = generator.integers(0, 4, size=9).astype(float)  # ties likely
    y = generator.normal(size=9)
    expected = spearmanr(x, y).statistic
    got = spearman(x, y)
    if np.isnan(expected):
        assert got is None
    else:
        assert got == pytest.approx(expected, abs=1e-12)


def test_ranks_ties_and_undefined_correlations():
    assert average_ranks([3.0, 1.0, 3.0, 2.0]).tolist() == [3.5, 1.0, 3.5, 2.0]
    assert spearman([1, 1, 1], [1, 2, 3]) is None  # a constant signal says nothing
    assert spearman([1], [2]) is None
    with pytest.raises(ValueError, match="equal lengths"):
        spearman([1, 2], [1, 2, 3])


def _outcome(task, signal, errors):
    labels = tuple(f"c{i}" for i in range(len(errors)))
    return TaskOutcome(task, "error_rate", labels, {"s": signal}, errors)


def test_a_perfect_signal_is_significant_and_always_picks_the_best():
    outcomes = [_outcome(f"t{i}", [1, 2, 3, 4], [10 + i, 20, 30, 40]) for i in range(6)]
    stats = evaluate_signal(outcomes, "s")
    assert stats["pooled_rho"] == pytest.approx(1.0)
    # exact p: (1/24)^6 per arrangement, so only the observed one reaches mean ρ = 1
    assert stats["pooled_p_value"] == pytest.approx(1 / 20_001)
    assert stats["pooled_p_value_below"] == pytest.approx(1.0)  # not backwards
    assert (stats["top1_hits"], stats["top1_rate"], stats["top1_chance"]) == (6, 1.0, 0.25)
    assert stats["mean_regret"] == 0.0


def test_hand_computed_mixed_case():
    outcomes = [
        _outcome("right", [1, 2, 3], [5.0, 6.0, 7.0]),  # ρ = 1, pick is best
        _outcome("wrong", [1, 2, 3], [7.0, 6.0, 5.0]),  # ρ = -1, pick is worst: regret 1
        _outcome("tie", [2, 1, 3], [5.0, 5.0, 9.0]),  # pick (c1) ties for best: a hit
    ]
    stats = evaluate_signal(outcomes, "s")
    # "tie": ranks of the signal (2, 1, 3), of the errors (1.5, 1.5, 3): r = 0.866...
    assert stats["per_task"]["tie"] == pytest.approx(np.sqrt(3) / 2)
    assert stats["pooled_rho"] == pytest.approx((1 - 1 + np.sqrt(3) / 2) / 3)
    assert stats["top1_hits"] == 2
    assert stats["top1_chance"] == pytest.approx((1 / 3 + 1 / 3 + 2 / 3) / 3)
    assert stats["mean_regret"] == pytest.approx((0 + 1 + 0) / 3)
    assert 0.05 < stats["pooled_p_value"] < 1


def test_a_signal_that_is_constant_in_a_task_is_left_out_of_its_pooled_rho():
    outcomes = [_outcome("flat", [1, 1, 1], [3.0, 2.0, 1.0]), _outcome("ok", [1, 2, 3], [1, 2, 3])]
    stats = evaluate_signal(outcomes, "s")
    assert stats["per_task"] == {"flat": None, "ok": pytest.approx(1.0)}
    assert stats["tasks_with_rho"] == 1 and stats["pooled_rho"] == pytest.approx(1.0)


def test_outcomes_need_one_value_per_candidate():
    with pytest.raises(ValueError, match="one signal value and one error per candidate"):
        TaskOutcome("t", "m", ("a", "b"), {"s": [1.0]}, [1.0, 2.0])


def test_the_report_says_plainly_when_the_default_signal_is_weak(tmp_path):
    outcomes = [
        TaskOutcome(
            f"t{i}",
            "error_rate",
            ("a", "b", "c"),
            {
                "otdd_after": [3.0, 2.0, 1.0],
                "otdd_scaled": [3.0, 1.0, 2.0],
                "probe": [1.0, 2.0, 3.0],
            },
            [3.0, 2.0, 1.0] if i % 2 else [1.0, 2.0, 3.0],  # probe right half the time
        )
        for i in range(6)
    ]
    names = [row["signal"] for row in analyse(outcomes)]
    assert names == ["otdd_after", "otdd_scaled", "probe", "otdd_after+probe"]
    context = {"command": "orca recommend --validate --suite demo"}
    written = write_validation_report(outcomes, tmp_path, context, ["t9: failed"])
    text = (tmp_path / "RECOMMEND-VALIDATION.md").read_text()
    assert "The default signal (probe) is a weak predictor" in text
    assert "| probe | 0.00 |" in text  # pooled ρ over 3 right and 3 wrong tasks
    assert "- t9: failed" in text and "orca recommend --validate --suite demo" in text
    data = json.loads((tmp_path / "recommend-validation.json").read_text())
    assert data["statistics"] == json.loads(json.dumps(written["statistics"]))
    assert [o["task"] for o in data["outcomes"]] == [f"t{i}" for i in range(6)]
    assert not list(tmp_path.glob(".*tmp*"))  # written atomically: no temporary files left

    # The report again from its data (after a change to the statistics or the layout).
    again = rebuild(tmp_path / "recommend-validation.json", tmp_path / "again")
    assert again["statistics"] == written["statistics"]
    assert (tmp_path / "again" / "RECOMMEND-VALIDATION.md").read_text() == text


def test_a_signal_that_points_the_wrong_way_is_named():
    outcomes = [
        TaskOutcome(
            f"t{i}",
            "error_rate",
            ("a", "b", "c", "d"),
            {"otdd_after": [1.0, 2.0, 3.0, 4.0]},
            [4.0 + i, 3.0, 2.0, 1.0],
        )
        for i in range(6)
    ]
    (stats,) = analyse(outcomes)
    assert stats["pooled_p_value_below"] < 0.05 < stats["pooled_p_value"]
    expected = "Pointing the wrong way at α = 0.05 (a lower signal went with a higher test error)"
    assert f"{expected}: otdd_after." in verdict([stats])
