"""The paper's findings checked on hand-made runs with hand-computed tests, and RESULTS.md
around a report."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binomtest

from orca.reporting.findings import (
    HELD,
    NOT_DISTINGUISHABLE,
    NOT_HELD,
    NOT_TESTED,
    check_findings,
    findings_markdown,
    head_to_head,
    mean_ranks,
    paired_outcomes,
    run_scores,
)
from orca.reporting.results import write_results
from orca.reporting.significance import (
    SignificanceConfig,
    average_ranks,
    sign_flip_test,
    sign_test,
)

STAGE_2 = "Embedder training"
AGGREGATE = "ORCA has the best aggregate performance over the tasks"


def _run(task: str, method: str, seed: int, value: float, lower: bool = True) -> dict:
    metric = "error_rate" if lower else "accuracy"
    return {
        "task": task,
        "method": method,
        "seed": seed,
        "metric": metric,
        "value": value,
        "lower_is_better": lower,
    }


def _runs(table: dict[str, dict[str, float]], lower: dict[str, bool], seeds: int = 1) -> list:
    return [
        _run(task, method, seed, value, lower[task])
        for task, row in table.items()
        for method, value in row.items()
        for seed in range(seeds)
    ]


def _paired(outcomes: str, a: str = "orca", b: str = "no-align") -> list[dict]:
    """Runs of a and b whose (task, seed) pairs go as `outcomes` says, pair by pair: w (a is
    better), l (b is better), t (tied); two seeds per task, every other task higher-is-better
    so that the direction is read from each run."""
    runs = []
    for i, outcome in enumerate(outcomes):
        task, seed = f"t{i // 2}", i % 2
        lower = (i // 2) % 2 == 0
        good, bad = (1.0, 2.0) if lower else (0.9, 0.8)
        va, vb = {"w": (good, bad), "l": (bad, good), "t": (good, good)}[outcome]
        runs += [_run(task, a, seed, va, lower), _run(task, b, seed, vb, lower)]
    return runs


def _verdicts(runs: list[dict], **level) -> dict:
    verdicts = check_findings(runs, SignificanceConfig(**level))
    return {v.claim.split(" (")[0]: v for v in verdicts}


def test_sign_test_by_hand():
    assert sign_test(10, 0) == pytest.approx(2 * 0.5**10)  # 0.00195
    assert sign_test(0, 10) == pytest.approx(2 * 0.5**10)
    assert sign_test(9, 1) == pytest.approx(2 * (1 + 10) / 2**10)  # P(X <= 1) + P(X >= 9)
    assert sign_test(3, 2) == 1.0  # P(X >= 3) + P(X <= 2): every outcome
    assert sign_test(7, 3) == pytest.approx(binomtest(7, 10).pvalue)
    assert sign_test(0, 0) == 1.0


def test_ten_of_ten_pairs_hold():
    stage_2 = _verdicts(_paired("w" * 10))[STAGE_2]
    assert stage_2.status == HELD
    assert "orca better in 10 of 10 (task, seed) pairs, no-align in 0, 0 tied" in stage_2.evidence
    assert "sign test p = 0.002 " in stage_2.evidence  # 2 * 0.5^10 = 0.00195
    assert "on task means: orca 5, no-align 0, 0 tied" in stage_2.evidence
    # At alpha = 0.001 the same runs are not enough.
    assert _verdicts(_paired("w" * 10), alpha=0.001)[STAGE_2].status == NOT_DISTINGUISHABLE


def test_a_narrow_lead_is_not_distinguishable_and_a_reversal_did_not_hold():
    three_two = _verdicts(_paired("wwlwl"))[STAGE_2]
    assert three_two.status == NOT_DISTINGUISHABLE
    assert "orca better in 3 of 5 (task, seed) pairs, no-align in 2" in three_two.evidence
    assert "p = 1 " in three_two.evidence
    reversed_ = _verdicts(_paired("l" * 10))[STAGE_2]
    assert reversed_.status == NOT_HELD and "no-align in 10, 0 tied" in reversed_.evidence


def test_ties_are_dropped_from_the_sign_test():
    verdict = _verdicts(_paired("w" * 10 + "t" * 4))[STAGE_2]
    assert verdict.status == HELD
    assert "orca better in 10 of 14 (task, seed) pairs, no-align in 0, 4 tied" in verdict.evidence
    assert "sign test p = 0.002 " in verdict.evidence  # as for 10 wins and nothing else
    # Nine wins and a loss among ties: p = 2 * 11 / 1024 = 0.021.
    assert "p = 0.021 " in _verdicts(_paired("w" * 9 + "l" + "t" * 6))[STAGE_2].evidence


def test_pairs_are_matched_by_task_and_seed():
    runs = [
        # x: both ran seeds 1 and 2; a's seed 0 and b's seed 3 have no partner.
        *(_run("x", "a", s, v) for s, v in [(0, 9.0), (1, 1.0), (2, 5.0)]),
        *(_run("x", "b", s, v) for s, v in [(1, 2.0), (2, 4.0), (3, 0.0)]),
        # y: no seed in common, so one pair of means: a 3.0 against b 3.5.
        *(_run("y", "a", s, v) for s, v in [(0, 2.0), (1, 4.0)]),
        _run("y", "b", 5, 3.5),
        # z: only a ran.
        _run("z", "a", 0, 1.0),
    ]
    scores = run_scores(runs)
    assert paired_outcomes(scores, "a", "b") == (2, 1, 0)
    assert head_to_head(scores, "a", "b") == (1, 1, 0)  # x: a's mean 5 > b's 2; y: 3 < 3.5
    # One seed per task: the pairs are the tasks.
    one_seed = [r for r in _paired("w" * 8) if r["seed"] == 0]
    assert paired_outcomes(run_scores(one_seed), "orca", "no-align") == (4, 0, 0)


# Three tasks, one seed; "acc" is higher-is-better, so its ranking flips.
TABLE = {
    "a": {"orca": 0.10, "orca-mmd": 0.20, "no-align": 0.30, "fpt": 0.40, "scratch": 0.50},
    "b": {"orca": 0.30, "orca-mmd": 0.10, "no-align": 0.20, "fpt": 0.20, "scratch": 0.60},
    "acc": {"orca": 0.90, "orca-mmd": 0.80, "no-align": 0.70, "fpt": 0.60, "scratch": 0.95},
}
LOWER = {"a": True, "b": True, "acc": False}


def test_head_to_head_and_mean_ranks_by_hand():
    scores = run_scores(_runs(TABLE, LOWER))
    assert head_to_head(scores, "orca", "no-align") == (2, 1, 0)
    assert head_to_head(scores, "no-align", "fpt") == (2, 0, 1)  # b is a tie
    ranks = mean_ranks(scores, ["orca", "orca-mmd"])
    assert ranks == pytest.approx({"orca": (1 + 2 + 1) / 3, "orca-mmd": (2 + 1 + 2) / 3})
    # On b, no-align and fpt tie for 2nd/3rd: both get rank 2.5.
    ranks = mean_ranks(scores, ["orca-mmd", "no-align", "fpt"])
    assert ranks == pytest.approx(
        {"orca-mmd": 1.0, "no-align": (2 + 2.5 + 2) / 3, "fpt": (3 + 2.5 + 3) / 3}
    )


def test_average_ranks_share_ties_once():
    np.testing.assert_allclose(average_ranks([0.1, 0.3, 0.3]), [1.0, 2.5, 2.5])
    # Close but not equal: tied, and neither counts the other as better.
    np.testing.assert_allclose(average_ranks([1.0, 1.000001, 2.0]), [1.5, 1.5, 3.0])


def test_three_tasks_show_their_figures_but_decide_nothing():
    verdicts = _verdicts(_runs(TABLE, LOWER))
    # All methods: orca ranks 1, 4, 2 (mean 2.33); orca-mmd 2, 1, 3 (mean 2.0) is best.
    aggregate = verdicts[AGGREGATE]
    assert aggregate.status == NOT_DISTINGUISHABLE
    assert "over 3 tasks (mean rank, 1 = best): orca-mmd 2.00, orca 2.33" in aggregate.evidence
    assert "orca-mmd p = 1," in aggregate.evidence  # differences 1, -3, 1: any |sum| >= 1
    assert verdicts["OTDD is the best alignment metric in aggregate"].status == NOT_DISTINGUISHABLE
    pretraining = verdicts["The pretrained body beats the same architecture trained from scratch"]
    assert pretraining.status == NOT_DISTINGUISHABLE
    assert "orca better in 2 of 3 (task, seed) pairs, scratch in 1" in pretraining.evidence
    assert verdicts["The pretraining modality matters"].status == NOT_TESTED

    # The same table over four seeds: twelve pairs. no-align beats fpt in 8, ties 4:
    # p = 2 * 0.5^8 = 0.0078, held; orca beats no-align 8 to 4: p = 0.39, not distinguishable.
    verdicts = _verdicts(_runs(TABLE, LOWER, seeds=4))
    full = verdicts["Full fine-tuning beats partial fine-tuning"]
    assert full.status == HELD and "sign test p = 0.0078 " in full.evidence
    assert verdicts[STAGE_2].status == NOT_DISTINGUISHABLE
    assert "sign test p = 0.39 " in verdicts[STAGE_2].evidence


# The committed RESULTS.md's means (lower is better): orca's mean rank 1.75, scratch's 1.81.
DEMO = {
    "acsf1": (77.33, 78.33, 77.33, 63.67),
    "basicmotions": (31.67, 0.8333, 0.0, 0.0),
    "breast-cancer": (0.07744, 0.05004, 0.04337, 0.055),
    "burgers": (0.9162, 0.88, 0.8737, 0.8276),
    "covid3month": (0.9991, 0.9754, 0.9833, 1.009),
    "darcy": (0.592, 0.5477, 0.5285, 0.4855),
    "digits": (62.72, 26.79, 16.98, 19.94),
    "gunpoint": (41.33, 40.44, 39.33, 36.67),
}


def test_a_best_mean_rank_by_a_hair_is_not_distinguishable():
    methods = ("fpt", "no-align", "orca", "scratch")
    table = {task: dict(zip(methods, row, strict=True)) for task, row in DEMO.items()}
    aggregate = _verdicts(_runs(table, dict.fromkeys(DEMO, True)))[AGGREGATE]
    assert aggregate.status == NOT_DISTINGUISHABLE
    assert "orca 1.75, scratch 1.81, no-align 2.75, fpt 3.69" in aggregate.evidence
    assert "scratch p = 1," in aggregate.evidence


def _ranked(order: tuple[str, ...], tasks: int = 8) -> list[dict]:
    """Every task ranks the methods in `order` (best first); half the tasks higher-is-better."""
    runs = []
    for t in range(tasks):
        lower = t % 2 == 0
        for place, method in enumerate(order):
            value = 1.0 + place if lower else 1.0 - 0.1 * place
            runs.append(_run(f"t{t}", method, 0, value, lower))
    return runs


def test_the_aggregate_is_decided_against_every_other_method():
    # First on all 8 tasks: each difference > 0, so only the two all-equal sign patterns
    # reach the observed sum: p = 2 / 2^8 = 0.0078 against each of the others.
    best = _verdicts(_ranked(("orca", "knn", "forest")))[AGGREGATE]
    assert best.status == HELD
    assert "over 8 tasks (mean rank, 1 = best): orca 1.00, knn 2.00, forest 3.00" in best.evidence
    assert "knn p = 0.0078, forest p = 0.0078" in best.evidence
    # Last on all 8: both are ahead at p = 0.0078 <= 0.05 / 2.
    assert _verdicts(_ranked(("knn", "forest", "orca")))[AGGREGATE].status == NOT_HELD
    # Ahead of forest on every task but level with knn (each first on half): undecided.
    level = _ranked(("orca", "knn", "forest"), 4) + [
        {**r, "task": f"u{r['task']}"} for r in _ranked(("knn", "orca", "forest"), 4)
    ]
    assert _verdicts(level)[AGGREGATE].status == NOT_DISTINGUISHABLE
    # Six tasks last of two: p = 2 / 64 = 0.031 <= 0.05 / 1.
    assert _verdicts(_ranked(("linear", "orca"), 6))[AGGREGATE].status == NOT_HELD
    # A method missing from a task takes that task out of the ranking.
    partial = [
        r for r in _ranked(("orca", "knn", "forest")) if (r["task"], r["method"]) != ("t0", "knn")
    ]
    assert "over 7 tasks" in _verdicts(partial)[AGGREGATE].evidence


def test_sign_flip_test_by_hand_and_against_the_sign_test():
    # d = 1, 1, 1, -1: |sum of flipped d| >= 2 for 0, 1, 3 or 4 plus signs: 10 of 16 patterns.
    kw = {"resamples": 1000, "seed": 0}
    assert sign_flip_test([1, 1, 1, -1], **kw) == pytest.approx(10 / 16)
    assert sign_flip_test([1, 1, 1, -1, 0, 0], **kw) == pytest.approx(10 / 16)  # 0s dropped
    assert sign_flip_test([0, 0], **kw) == 1.0
    # With differences of +-1 the sign-flip test is the sign test.
    for wins, losses in [(5, 0), (7, 2), (6, 6), (12, 3)]:
        d = [1.0] * wins + [-1.0] * losses
        assert sign_flip_test(d, **kw) == pytest.approx(sign_test(wins, losses))


def test_many_tasks_are_sampled_deterministically():
    d = [1.0] * 14 + [-1.0] * 6  # 20 > 16 differences: random sign patterns
    first = sign_flip_test(d, resamples=10_000, seed=3)
    assert sign_flip_test(d, resamples=10_000, seed=3) == first
    assert first == pytest.approx(sign_test(14, 6), abs=0.015)  # 0.115 exactly
    assert sign_flip_test([1.0] * 20, resamples=999, seed=0) == pytest.approx(1 / 1000)
    runs = _ranked(("orca", "knn"), 20)
    assert check_findings(runs) == check_findings(runs)


def test_the_level_is_validated_and_stated():
    with pytest.raises(ValueError, match=r"alpha=0 is out of range"):
        SignificanceConfig(alpha=0)
    with pytest.raises(ValueError, match=r"alpha=0.6 is out of range"):
        SignificanceConfig(alpha=0.6)
    with pytest.raises(ValueError, match=r"resamples=10 is out of range"):
        SignificanceConfig(resamples=10)
    level = SignificanceConfig(alpha=0.01, seed=7)
    assert SignificanceConfig.from_dict(level.to_dict()) == level
    verdicts = check_findings(_paired("w" * 10), level)
    table = findings_markdown(verdicts, level)
    assert "at α = 0.01;" in table and "p ≤ 0.01 / (number of other methods)" in table
    assert table.count("\n| ") == len(verdicts) + 1  # the header row and one per finding
    assert "| **held** |" in table and "| not tested |" in table


def test_findings_need_their_methods():
    only = {task: {"orca": row["orca"], "scratch": row["scratch"]} for task, row in TABLE.items()}
    by_claim = _verdicts(_runs(only, LOWER))
    assert by_claim["OTDD is the best alignment metric in aggregate"].status == NOT_TESTED
    full = by_claim["Full fine-tuning beats partial fine-tuning"]
    assert full.status == NOT_TESTED and "needs methods no-align and fpt" in full.evidence
    with pytest.raises(ValueError, match=r"lacks field\(s\) \['lower_is_better'\]"):
        check_findings([{"task": "a", "method": "m", "seed": 0, "metric": "x", "value": 1.0}])


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
