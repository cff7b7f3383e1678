"""Paired tests behind the findings: a sign test over paired runs, a sign-flip test over tasks.

Both ask whether two methods' paired results differ by more than chance would make them,
and both are exact under the null hypothesis that, within each pair, the two methods are
interchangeable (either is equally likely to be the better one). They assume nothing about
the metrics' scales or distributions, which differ from task to task.

- `sign_test(wins, losses)`: the exact two-sided binomial test of wins against losses,
  p = P(|X - n/2| >= |wins - n/2|) for X ~ Binomial(n = wins + losses, 1/2). Ties carry no
  information about which method is better and are left out.
- `sign_flip_test(differences)`: for paired differences d_1..d_n (e.g. per-task ranks),
  the two-sided randomisation test of their sum: p = the share of the 2^n sign patterns
  s with |sum s_i d_i| >= |sum d_i|. Exact by enumeration up to EXACT_MAX_PAIRS non-zero
  differences; beyond that, estimated from `resamples` seeded random patterns as
  (1 + hits) / (1 + resamples), whose expectation is at least the exact p-value.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import binomtest

from orca.config.base import Config, check_number

EXACT_MAX_PAIRS = 16  # 2^16 sign patterns: enumerated in well under a second


@dataclass(frozen=True)
class SignificanceConfig(Config):
    """The level at which a finding is decided, and the randomisation test's resampling."""

    alpha: float = 0.05  # the test's level: a finding holds or fails only at p <= alpha
    resamples: int = 10_000  # random sign patterns, when there are too many to enumerate
    seed: int = 0  # for those patterns, so that the same results give the same p-value

    def __post_init__(self) -> None:
        check_number("alpha", self.alpha, minimum=0, maximum=0.5, exclusive_minimum=True)
        check_number("resamples", self.resamples, minimum=100, integer=True)
        check_number("seed", self.seed, minimum=0, integer=True)


def sign_test(wins: int, losses: int) -> float:
    """Two-sided exact sign test p-value of `wins` against `losses`; 1 when both are 0."""
    if wins + losses == 0:
        return 1.0
    return float(binomtest(wins, wins + losses, 0.5, alternative="two-sided").pvalue)


def sign_flip_test(differences: Sequence[float], *, resamples: int, seed: int) -> float:
    """Two-sided paired randomisation test that `differences` are centred on 0 (see above)."""
    d = np.asarray(differences, dtype=float)
    d = d[~np.isclose(d, 0.0)]  # a zero difference is the same under either sign
    n = len(d)
    if n == 0:
        return 1.0
    observed = abs(d.sum())
    tolerance = 1e-9 * max(1.0, observed)  # sums of half-integer ranks are exact, but be safe
    if n <= EXACT_MAX_PAIRS:
        patterns = (np.arange(2**n)[:, None] >> np.arange(n)) & 1  # (2^n, n) bits
        signs = 1.0 - 2.0 * patterns
        return float(np.mean(np.abs(signs @ d) >= observed - tolerance))
    signs = np.random.default_rng(seed).choice([-1.0, 1.0], size=(resamples, n))
    hits = int(np.sum(np.abs(signs @ d) >= observed - tolerance))
    return (1 + hits) / (1 + resamples)


def average_ranks(scores: Sequence[float]) -> np.ndarray:
    """Rank of each score, 1 = smallest; scores equal up to np.isclose share their average
    rank, e.g. [0.1, 0.3, 0.3] -> [1, 2.5, 2.5]."""
    s = np.asarray(scores, dtype=float)
    tied = np.isclose(s[:, None], s[None, :])  # (K, K)
    better = (s[None, :] < s[:, None]) & ~tied  # [i, j]: j is strictly better than i
    return better.sum(axis=1) + (tied.sum(axis=1) + 1) / 2
