"""Dolan–Moré performance profiles (Dolan & Moré 2002), as the ORCA paper aggregates tasks.

For task t and method m with mean score s[t, m], the performance ratio is
    r[t, m] = s[t, m] / min_m' s[t, m']      (lower is better)
    r[t, m] = max_m' s[t, m'] / s[t, m]      (higher is better)
with r = 1 when the method matches the best score exactly (a best score of 0 gives every
other method r = inf), and r = inf when m has no result on t. The profile of m is
    rho_m(tau) = |{t : r[t, m] <= tau}| / |T|,
the fraction of tasks on which m is within a factor tau of the best. Higher and further
left is better; rho_m(1) is the fraction of tasks m wins.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from orca.reporting.comparison import SummaryRow


def performance_ratios(summary: list[SummaryRow]) -> tuple[list[str], list[str], np.ndarray]:
    """(tasks, methods, ratios (T, M)) from per-task means."""
    tasks = sorted({row.task for row in summary})
    methods = sorted({row.method for row in summary})
    scores = np.full((len(tasks), len(methods)), np.nan)
    lower = {}
    for row in summary:
        scores[tasks.index(row.task), methods.index(row.method)] = row.mean
        lower[row.task] = row.lower_is_better
    ratios = np.full_like(scores, np.inf)
    for t, task in enumerate(tasks):
        present = ~np.isnan(scores[t])
        best = np.min(scores[t, present]) if lower[task] else np.max(scores[t, present])
        for m in np.flatnonzero(present):
            score = scores[t, m]
            if score == best:
                ratios[t, m] = 1.0
            elif lower[task]:
                ratios[t, m] = score / best if best > 0 else np.inf
            else:
                ratios[t, m] = best / score if score > 0 else np.inf
    return tasks, methods, ratios


def profile_curves(ratios: np.ndarray, taus: np.ndarray) -> np.ndarray:
    """rho (M, len(taus)): fraction of tasks (rows of `ratios`) within each tau."""
    return (ratios[:, :, None] <= taus[None, None, :]).mean(axis=0)


def tau_grid(ratios: np.ndarray, points: int = 200) -> np.ndarray:
    finite = ratios[np.isfinite(ratios)]
    top = max(float(finite.max()) if finite.size else 1.0, 1.0) * 1.05
    return np.unique(np.concatenate([np.linspace(1.0, top, points), finite]))


def plot_profile(summary: list[SummaryRow], path: str | Path, title: str) -> Path:
    """Draw the profile of every method as a step plot to a PNG at `path`."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    tasks, methods, ratios = performance_ratios(summary)
    taus = tau_grid(ratios)
    curves = profile_curves(ratios, taus)
    figure, axis = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for method, curve in zip(methods, curves, strict=True):
        axis.step(taus, curve, where="post", label=method)
    axis.set_xlabel("tau (ratio to the best method on a task)")
    axis.set_ylabel(f"fraction of the {len(tasks)} tasks within tau")
    axis.set_ylim(-0.02, 1.02)
    axis.set_title(title)
    axis.grid(alpha=0.3)
    axis.legend(loc="lower right", fontsize="small")
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path)
    plt.close(figure)
    return path
