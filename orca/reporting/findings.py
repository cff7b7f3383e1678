"""The paper's findings, checked against a comparison: which held on this suite, which not.

Each finding (ORCA-METHOD.md, "Findings the paper reports", plus the NAACL 2024 counter-
claim about embedder training) is a function of the per-task summary rows that returns a
Verdict: "held", "did not hold", or "not tested" when the methods it needs were not run or
when another command tests it. Methods are compared per task by their mean over seeds in
the metric's direction; ties (np.isclose) count for neither side. Aggregates use the mean
rank over tasks (1 = best, ties share the average rank), the Dolan-More profile's
ordering at tau = 1 in a form that does not depend on the metrics' scales.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from orca.registry import Registry
from orca.reporting.comparison import SummaryRow

HELD, NOT_HELD, NOT_TESTED = "held", "did not hold", "not tested"
ALIGNMENT_VARIANTS = ("orca", "orca-mmd", "orca-l2", "orca-cosine")


@dataclass(frozen=True)
class Verdict:
    claim: str
    status: str  # HELD, NOT_HELD or NOT_TESTED
    evidence: str


@dataclass(frozen=True)
class Finding:
    order: int  # the paper's numbering; later ones are the follow-up studies' claims
    claim: str
    check: Callable[[Sequence[SummaryRow]], tuple[str, str]]  # -> (status, evidence)


FINDINGS: Registry[Finding] = Registry("finding")


def _by_task(summary: Sequence[SummaryRow]) -> dict[str, dict[str, SummaryRow]]:
    tasks: dict[str, dict[str, SummaryRow]] = defaultdict(dict)
    for row in summary:
        tasks[row.task][row.method] = row
    return dict(tasks)


def _score(row: SummaryRow) -> float:
    """Smaller is better, whatever the metric's direction."""
    return row.mean if row.lower_is_better else -row.mean


def head_to_head(summary: Sequence[SummaryRow], a: str, b: str) -> tuple[int, int, int]:
    """(tasks where a is better, where b is better, ties) over the tasks that ran both."""
    a_wins = b_wins = ties = 0
    for rows in _by_task(summary).values():
        if a not in rows or b not in rows:
            continue
        sa, sb = _score(rows[a]), _score(rows[b])
        if np.isclose(sa, sb):
            ties += 1
        elif sa < sb:
            a_wins += 1
        else:
            b_wins += 1
    return a_wins, b_wins, ties


def mean_ranks(summary: Sequence[SummaryRow], methods: Sequence[str]) -> dict[str, float]:
    """Mean rank of each method over the tasks on which every one of `methods` ran."""
    totals = {method: 0.0 for method in methods}
    counted = 0
    for rows in _by_task(summary).values():
        if not all(method in rows for method in methods):
            continue
        scores = np.array([_score(rows[method]) for method in methods])
        for i, method in enumerate(methods):
            better = np.sum(scores < scores[i] - 1e-12 * np.abs(scores[i]))
            tied = np.sum(np.isclose(scores, scores[i]))
            totals[method] += better + (tied + 1) / 2
        counted += 1
    if counted == 0:
        return {}
    return {method: total / counted for method, total in totals.items()}


def _methods(summary: Sequence[SummaryRow]) -> list[str]:
    return sorted({row.method for row in summary})


def _pairwise(a: str, b: str, what: str) -> Callable[[Sequence[SummaryRow]], tuple[str, str]]:
    def check(summary: Sequence[SummaryRow]) -> tuple[str, str]:
        present = _methods(summary)
        if a not in present or b not in present:
            return NOT_TESTED, f"needs methods {a} and {b}; this run had {', '.join(present)}"
        a_wins, b_wins, ties = head_to_head(summary, a, b)
        total = a_wins + b_wins + ties
        status = HELD if a_wins > b_wins else NOT_HELD
        return status, (
            f"{what}: {a} better on {a_wins} of {total} tasks, {b} on {b_wins}, {ties} tied"
        )

    return check


def _best_by_rank(
    candidates: Sequence[str], champion: str, what: str
) -> Callable[[Sequence[SummaryRow]], tuple[str, str]]:
    def check(summary: Sequence[SummaryRow]) -> tuple[str, str]:
        present = [m for m in (candidates or _methods(summary)) if m in _methods(summary)]
        if champion not in present or len(present) < 2:
            others = [m for m in candidates if m != champion] or ["another method"]
            return NOT_TESTED, f"needs {champion} and at least one of {', '.join(others)}"
        ranks = mean_ranks(summary, present)
        if not ranks:
            return NOT_TESTED, "no task ran every one of " + ", ".join(present)
        order = sorted(ranks, key=lambda m: (ranks[m], m))
        best = min(ranks.values())
        status = HELD if np.isclose(ranks[champion], best) else NOT_HELD
        listing = ", ".join(f"{m} {ranks[m]:.2f}" for m in order)
        return status, f"{what} (mean rank over tasks, 1 = best): {listing}"

    return check


def _elsewhere(command: str, part: str) -> Callable[[Sequence[SummaryRow]], tuple[str, str]]:
    return lambda summary: (
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


def check_findings(summary: Sequence[SummaryRow]) -> list[Verdict]:
    """Every registered finding's verdict on `summary`, in registration order."""
    verdicts = []
    for finding in sorted((FINDINGS.get(name) for name in FINDINGS), key=lambda f: f.order):
        status, evidence = finding.check(summary)
        verdicts.append(Verdict(finding.claim, status, evidence))
    return verdicts


def findings_markdown(verdicts: Sequence[Verdict]) -> str:
    lines = ["| paper's finding | on this suite | evidence |", "|---|---|---|"]
    for verdict in verdicts:
        status = f"**{verdict.status}**" if verdict.status != NOT_TESTED else verdict.status
        lines.append(f"| {verdict.claim} | {status} | {verdict.evidence} |")
    return "\n".join(lines) + "\n"
