"""The paper's findings, checked against a comparison's runs with a paired test each.

Each finding (ORCA-METHOD.md, "Findings the paper reports", plus the NAACL 2024 counter-
claim about embedder training) is a function of the single runs that returns a Verdict:

- "held": a paired test at level alpha (SignificanceConfig, 0.05 by default) shows it;
- "did not hold": the same test shows the opposite;
- "not distinguishable": the figures lean one way or the other, but not beyond chance;
- "not tested": the methods it needs were not run, or another command tests it.

A run's score is its value, negated where higher is better, so smaller is better whatever
the metric. Scores equal up to np.isclose are ties.

"A beats B" claims use the exact two-sided sign test (significance.sign_test) over the
(task, seed) pairs that ran both methods: each pair is a win, a loss or a tie (dropped).
Pairing by seed compares runs made with the same random seed (initialisation and data
order) on the same splits, and counting wins rather than averaging differences lets tasks
with different metrics and scales count alike. Where a task's two methods share no seed,
their means over seeds make one pair, so a suite run with one seed is tested over tasks.
Seeds of one task are not independent draws of a task, so the test speaks for this suite's
tasks, not for tasks in general; the evidence also gives the counts on task means.

"X has the best mean rank" claims rank the methods on each task by their mean over seeds
(1 = best, ties share the average rank) over the tasks that ran them all, the Dolan-More
profile's ordering at tau = 1 without its dependence on the metrics' scales. X is compared
with every other method M by an exact paired sign-flip test (significance.sign_flip_test)
of the per-task rank differences rank(M) - rank(X). The claim holds when X is ahead of
every M at p <= alpha (all of them must be shown, so no correction is needed), and did not
hold when some M is ahead of X at p <= alpha / (number of others) (any one of them may be
the one, hence Bonferroni). A bootstrap over tasks of the margin over the best other
method, the obvious alternative, does not keep its level on suites this small: in 400
simulated suites of 8 tasks with 4 interchangeable methods, a 95% percentile interval of
that margin fell entirely below 0 in 15% of them (37% with 8 methods), and per-method
intervals at the Bonferroni level in 7% (13%), against 2.5% intended; the sign-flip test
stayed under 2.5% with 6 to 40 tasks and 2 to 8 methods.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from orca.methods import METHODS
from orca.registry import Registry
from orca.reporting.comparison import RUN_FIELDS
from orca.reporting.significance import (
    SignificanceConfig,
    average_ranks,
    sign_flip_test,
    sign_test,
)

HELD, NOT_HELD = "held", "did not hold"
NOT_DISTINGUISHABLE, NOT_TESTED = "not distinguishable", "not tested"
# ORCA with each alignment metric: the methods that run stage 2, as orca.methods says
ALIGNMENT_VARIANTS = tuple(name for name, spec in METHODS.items() if spec.align)

# task -> method -> seed -> the run's score (smaller is better); a seed run twice, its mean
Scores = dict[str, dict[str, dict[Any, float]]]
Check = Callable[[Scores, SignificanceConfig], tuple[str, str]]  # -> (status, evidence)


@dataclass(frozen=True)
class Verdict:
    claim: str
    status: str  # HELD, NOT_HELD, NOT_DISTINGUISHABLE or NOT_TESTED
    evidence: str


@dataclass(frozen=True)
class Finding:
    order: int  # the paper's numbering; later ones are the follow-up studies' claims
    claim: str
    check: Check


FINDINGS: Registry[Finding] = Registry("finding")


def run_scores(runs: Iterable[Mapping[str, Any]]) -> Scores:
    """Each run's score by task, method and seed; raise ValueError naming a malformed run."""
    values: dict[tuple[str, str, Any], list[float]] = defaultdict(list)
    for run in runs:
        missing = [f for f in RUN_FIELDS if f not in run]
        if missing:
            raise ValueError(f"run {dict(run)!r} lacks field(s) {missing}")
        sign = 1.0 if run["lower_is_better"] else -1.0
        values[(run["task"], run["method"], run["seed"])].append(sign * float(run["value"]))
    scores: Scores = defaultdict(lambda: defaultdict(dict))
    for (task, method, seed), seed_values in values.items():
        scores[task][method][seed] = float(np.mean(seed_values))
    return {task: dict(methods) for task, methods in sorted(scores.items())}


def _methods(scores: Scores) -> list[str]:
    return sorted({method for methods in scores.values() for method in methods})


def _task_mean(seeds: Mapping[Any, float]) -> float:
    return float(np.mean(list(seeds.values())))


def _tally(pairs: Iterable[tuple[float, float]]) -> tuple[int, int, int]:
    wins = losses = ties = 0
    for sa, sb in pairs:
        if np.isclose(sa, sb):
            ties += 1
        elif sa < sb:
            wins += 1
        else:
            losses += 1
    return wins, losses, ties


def paired_outcomes(scores: Scores, a: str, b: str) -> tuple[int, int, int]:
    """(pairs where a is better, where b is better, ties) over the (task, seed) pairs that
    ran both; a task whose two methods share no seed gives one pair of means over seeds."""
    pairs = []
    for methods in scores.values():
        if a not in methods or b not in methods:
            continue
        shared = [seed for seed in methods[a] if seed in methods[b]]
        if shared:
            pairs += [(methods[a][seed], methods[b][seed]) for seed in shared]
        else:
            pairs.append((_task_mean(methods[a]), _task_mean(methods[b])))
    return _tally(pairs)


def head_to_head(scores: Scores, a: str, b: str) -> tuple[int, int, int]:
    """(tasks where a's mean over seeds is better, where b's is, ties) over tasks ran by both."""
    return _tally(
        (_task_mean(methods[a]), _task_mean(methods[b]))
        for methods in scores.values()
        if a in methods and b in methods
    )


def task_ranks(scores: Scores, methods: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """The tasks that ran every one of `methods`, and the methods' ranks on each by mean
    over seeds: an array (tasks, methods), 1 = best, ties sharing their average rank."""
    tasks = [task for task, ran in scores.items() if all(m in ran for m in methods)]
    ranks = np.array(
        [average_ranks([_task_mean(scores[task][m]) for m in methods]) for task in tasks]
    ).reshape(len(tasks), len(methods))  # (T, K)
    return tasks, ranks


def mean_ranks(scores: Scores, methods: Sequence[str]) -> dict[str, float]:
    """Mean rank of each method over the tasks on which every one of `methods` ran."""
    tasks, ranks = task_ranks(scores, methods)
    if not tasks:
        return {}
    return {method: float(rank) for method, rank in zip(methods, ranks.mean(axis=0), strict=True)}


def _decide(lead: float, p: float, alpha: float) -> str:
    if p <= alpha and lead > 0:
        return HELD
    if p <= alpha and lead < 0:
        return NOT_HELD
    return NOT_DISTINGUISHABLE


def _pairwise(a: str, b: str, what: str) -> Check:
    def check(scores: Scores, level: SignificanceConfig) -> tuple[str, str]:
        present = _methods(scores)
        if a not in present or b not in present:
            return NOT_TESTED, f"needs methods {a} and {b}; this run had {', '.join(present)}"
        wins, losses, ties = paired_outcomes(scores, a, b)
        if wins + losses + ties == 0:
            return NOT_TESTED, f"no task ran both {a} and {b}"
        p = sign_test(wins, losses)
        task_wins, task_losses, task_ties = head_to_head(scores, a, b)
        return _decide(wins - losses, p, level.alpha), (
            f"{what}: {a} better in {wins} of {wins + losses + ties} (task, seed) pairs, "
            f"{b} in {losses}, {ties} tied; sign test p = {p:.2g} "
            f"(on task means: {a} {task_wins}, {b} {task_losses}, {task_ties} tied)"
        )

    return check


def _best_by_rank(candidates: Sequence[str], champion: str, what: str) -> Check:
    def check(scores: Scores, level: SignificanceConfig) -> tuple[str, str]:
        ran = _methods(scores)
        present = [m for m in (candidates or ran) if m in ran]
        if champion not in present or len(present) < 2:
            others = [m for m in candidates if m != champion] or ["another method"]
            return NOT_TESTED, f"needs {champion} and at least one of {', '.join(others)}"
        tasks, ranks = task_ranks(scores, present)
        if not tasks:
            return NOT_TESTED, "no task ran every one of " + ", ".join(present)
        means = dict(zip(present, ranks.mean(axis=0), strict=True))
        ahead = ranks - ranks[:, [present.index(champion)]]  # (T, K): > 0 where champion leads
        rivals = {
            m: (float(ahead[:, k].mean()), sign_flip_test(ahead[:, k], **_resampling(level)))
            for k, m in enumerate(present)
            if m != champion
        }
        if all(lead > 0 and p <= level.alpha for lead, p in rivals.values()):
            status = HELD
        elif any(lead < 0 and p * len(rivals) <= level.alpha for lead, p in rivals.values()):
            status = NOT_HELD
        else:
            status = NOT_DISTINGUISHABLE
        order = sorted(means, key=lambda m: (means[m], m))
        listing = ", ".join(f"{m} {means[m]:.2f}" for m in order)
        tests = ", ".join(f"{m} p = {rivals[m][1]:.2g}" for m in order if m != champion)
        return status, (
            f"{what} over {len(tasks)} tasks (mean rank, 1 = best): {listing}; "
            f"{champion} against each, sign-flip test of per-task ranks: {tests}"
        )

    return check


def _resampling(level: SignificanceConfig) -> dict[str, int]:
    return {"resamples": level.resamples, "seed": level.seed}


def _elsewhere(command: str, part: str) -> Check:
    return lambda scores, level: (
        NOT_TESTED,
        f"not part of this comparison; `{command}` tests it ({part})",
    )


FINDINGS.register(
    "best-aggregate",
    Finding(
        1,
        "ORCA has the best aggregate performance over the tasks",
        _best_by_rank((), "orca", "all methods"),
    ),
)
FINDINGS.register(
    "otdd-best-metric",
    Finding(
        2,
        "OTDD is the best alignment metric in aggregate",
        _best_by_rank(ALIGNMENT_VARIANTS, "orca", "alignment metrics"),
    ),
)
FINDINGS.register(
    "lower-otdd-lower-error",
    Finding(
        3,
        "Optimising the OTDD further gives lower downstream error",
        _elsewhere("orca ablations", "alignment convergence"),
    ),
)
FINDINGS.register(
    "full-beats-fpt",
    Finding(
        4,
        "Full fine-tuning beats partial fine-tuning (FPT)",
        _pairwise("no-align", "fpt", "both without alignment, full vs partial tuning"),
    ),
)
FINDINGS.register(
    "modality-matters",
    Finding(
        5,
        "The pretraining modality matters (text body for 1D, vision body for 2D)",
        _elsewhere("orca ablations", "pretraining modality"),
    ),
)
FINDINGS.register(
    "alignment-helps-little-data",
    Finding(
        6,
        "With little training data, a well-aligned embedder helps more",
        _elsewhere("orca ablations", "data-limited regime"),
    ),
)
FINDINGS.register(
    "alignment-helps",
    Finding(
        7,
        "Embedder training (stage 2) lowers the error (the NAACL 2024 study found it often "
        "does not)",
        _pairwise("orca", "no-align", "with vs without stage 2"),
    ),
)
FINDINGS.register(
    "pretraining-helps",
    Finding(
        8,
        "The pretrained body beats the same architecture trained from scratch",
        _pairwise("orca", "scratch", "pretrained vs random body"),
    ),
)


def check_findings(
    runs: Iterable[Mapping[str, Any]], level: SignificanceConfig | None = None
) -> list[Verdict]:
    """Every registered finding's verdict on single `runs` (the rows summarise() takes:
    task, method, seed, metric, value, lower_is_better), in the paper's order."""
    level = level or SignificanceConfig()
    scores = run_scores(runs)
    verdicts = []
    for finding in sorted((FINDINGS.get(name) for name in FINDINGS.names()), key=lambda f: f.order):
        status, evidence = finding.check(scores, level)
        verdicts.append(Verdict(finding.claim, status, evidence))
    return verdicts


def findings_markdown(verdicts: Sequence[Verdict], level: SignificanceConfig | None = None) -> str:
    """The verdicts as a Markdown table, after a paragraph stating the tests and their level
    (pass the SignificanceConfig that check_findings used)."""
    alpha = (level or SignificanceConfig()).alpha
    lines = [
        f"A finding **held** or **did not hold** only where a paired test shows it at "
        f"α = {alpha:g}; otherwise it is *not distinguishable* on this suite. One method "
        "against another: an exact two-sided sign test over the (task, seed) pairs that ran "
        "both, ties left out. A best mean rank: an exact sign-flip test of the per-task rank "
        "differences against each other method; it held when ahead of all of them at "
        f"p ≤ {alpha:g}, and did not hold when one was ahead of it at p ≤ {alpha:g} / (number "
        "of other methods).",
        "",
        "| paper's finding | on this suite | evidence |",
        "|---|---|---|",
    ]
    for verdict in verdicts:
        status = f"**{verdict.status}**" if verdict.status in (HELD, NOT_HELD) else verdict.status
        lines.append(f"| {verdict.claim} | {status} | {verdict.evidence} |")
    return "\n".join(lines) + "\n"
