"""Does a recommendation signal predict the fine-tuned result? The statistics and the report.

Per task, every candidate has its signals (orca.recommend_signals, lower = better) and its
test error after the full pipeline (the task's metric, oriented so lower = better). For each
signal:

    Spearman ρ per task   between the signal and the test error over the task's candidates
                          (average ranks for ties; undefined, None, when either is constant)
    pooled ρ              the mean of the per-task ρ: the Spearman correlation of the
                          within-task ranks, all tasks together. Raw values are not pooled:
                          the tasks' metrics (error %, nRMSE, 1 - AUROC ...) do not share a
                          scale. Its p-value is one-sided (ρ > 0) by a permutation test that
                          shuffles each task's errors among its candidates (PERMUTATIONS draws,
                          seeded), so a few candidates per task are not over-read; the other
                          tail (ρ < 0: the signal points the wrong way) is reported too.
    top-1 hit rate        how often the signal's best candidate had the lowest test error
                          (ties for the lowest count as a hit), against the rate of a random
                          pick (the mean over tasks of #best / #candidates)
    mean regret           how much worse the signal's pick was than the best candidate, as a
                          fraction of the task's spread of errors (0 = always the best,
                          1 = always the worst)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

PERMUTATIONS = 20_000
PERMUTATION_SEED = 0


def average_ranks(values: Sequence[float]) -> np.ndarray:
    """1-based ranks, ties given their average rank."""
    values = np.asarray(values, dtype=float)
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(1, len(values) + 1)
    for value in np.unique(values):
        tied = values == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's ρ (Pearson's r of the average ranks); None when x or y is constant or
    there are fewer than 2 points."""
    if len(x) != len(y):
        raise ValueError(f"spearman: {len(x)} and {len(y)} values; expected equal lengths")
    if len(x) < 2:
        return None
    rx, ry = average_ranks(x), average_ranks(y)
    if np.ptp(rx) == 0 or np.ptp(ry) == 0:
        return None
    return float(np.corrcoef(rx, ry)[0, 1])


@dataclass(frozen=True)
class TaskOutcome:
    """One task's candidates: their labels, signals and oriented test errors."""

    task: str
    metric: str
    candidates: tuple[str, ...]
    signals: Mapping[str, Sequence[float]]  # signal -> one value per candidate
    errors: Sequence[float]  # test error per candidate, lower = better

    def __post_init__(self) -> None:
        n = len(self.candidates)
        if len(self.errors) != n or any(len(v) != n for v in self.signals.values()):
            raise ValueError(f"task {self.task}: one signal value and one error per candidate")


def _hit(signal: np.ndarray, errors: np.ndarray) -> bool:
    return bool(errors[int(np.argmin(signal))] == errors.min())


def _regret(signal: np.ndarray, errors: np.ndarray) -> float | None:
    spread = errors.max() - errors.min()
    if spread == 0:
        return None
    return float((errors[int(np.argmin(signal))] - errors.min()) / spread)


def evaluate_signal(outcomes: Sequence[TaskOutcome], signal: str) -> dict[str, Any]:
    """The per-task and pooled statistics of one signal (see the module docstring)."""
    per_task, hits, chance, regrets = {}, [], [], []
    used = []
    for outcome in outcomes:
        values = np.asarray(outcome.signals[signal], dtype=float)
        errors = np.asarray(outcome.errors, dtype=float)
        rho = spearman(values, errors)
        per_task[outcome.task] = rho
        hits.append(_hit(values, errors))
        chance.append(float((errors == errors.min()).mean()))
        regret = _regret(values, errors)
        if regret is not None:
            regrets.append(regret)
        if rho is not None:
            used.append((values, errors))
    pooled = float(np.mean([per_task[o.task] for o in outcomes if per_task[o.task] is not None]))
    pooled = pooled if used else None
    above, below = _permutation_p(used, pooled) if used else (None, None)
    return {
        "signal": signal,
        "per_task": per_task,
        "pooled_rho": pooled,
        "pooled_p_value": above,
        "pooled_p_value_below": below,  # the other tail: is the signal backwards?
        "tasks_with_rho": len(used),
        "top1_hits": int(sum(hits)),
        "top1_rate": float(np.mean(hits)) if hits else None,
        "top1_chance": float(np.mean(chance)) if chance else None,
        "mean_regret": float(np.mean(regrets)) if regrets else None,
    }


def _permutation_p(
    pairs: Sequence[tuple[np.ndarray, np.ndarray]], observed: float
) -> tuple[float, float]:
    """P(mean ρ >= observed) and P(mean ρ <= observed) when each task's errors are shuffled
    among its candidates."""
    generator = np.random.default_rng(PERMUTATION_SEED)
    total = np.zeros(PERMUTATIONS)
    for values, errors in pairs:
        rx = average_ranks(values)
        ry = average_ranks(errors)
        shuffled = np.array([generator.permutation(ry) for _ in range(PERMUTATIONS)])
        rx_c, ry_c = rx - rx.mean(), shuffled - shuffled.mean(axis=1, keepdims=True)
        denominator = np.sqrt((rx_c**2).sum() * (ry_c**2).sum(axis=1))
        total += (ry_c @ rx_c) / denominator
    means = total / len(pairs)
    # +1: the observed arrangement is one of the arrangements (never p = 0)
    above = (np.sum(means >= observed - 1e-12) + 1) / (PERMUTATIONS + 1)
    below = (np.sum(means <= observed + 1e-12) + 1) / (PERMUTATIONS + 1)
    return float(above), float(below)


def combined_signal(outcome: TaskOutcome, parts: Sequence[str]) -> list[float]:
    """The mean of the within-task ranks of `parts`: a rank-average combination."""
    return list(np.mean([average_ranks(outcome.signals[p]) for p in parts], axis=0))


def with_combination(outcome: TaskOutcome, name: str, parts: Sequence[str]) -> TaskOutcome:
    if not all(part in outcome.signals for part in parts):
        return outcome
    signals = {**outcome.signals, name: combined_signal(outcome, parts)}
    return TaskOutcome(outcome.task, outcome.metric, outcome.candidates, signals, outcome.errors)
