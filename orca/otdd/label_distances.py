"""Label-to-label distances: squared W_2 between the class-conditional feature distributions.

Notation
    X_a (n, d), y_a (n,)   side a: features and integer labels
    X_b (m, d), y_b (m,)   side b
    C_a, C_b               numbers of distinct labels on each side (sorted ascending)
    alpha_i                empirical distribution of the rows of X_a with the i-th label of a
    W (C_a, C_b)           W[i, j] = W_2(alpha_i, beta_j)^2, a SQUARED distance

Three kinds are registered in `LABEL_DISTANCES` (choose with `kind=`):
    "exact"     exact OT (network simplex, POT's `ot.emd2`) with squared-Euclidean cost.
    "sinkhorn"  debiased entropic Sinkhorn divergence S_eps with squared-Euclidean cost,
                OT_eps = <P, C> + eps KL (see `orca.otdd.sinkhorn`); eps = 0.1 by default.
    "gaussian"  Bures-Wasserstein: W_2^2 between Gaussians fitted to each class,
                |mu_i - mu_j|^2 + tr(S_i + S_j - 2 (S_i^1/2 S_j S_i^1/2)^1/2).

Every result is detached: in OTDD the gradient reaches features only through the feature term.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from orca.otdd.sinkhorn import sinkhorn_cost, squared_distances
from orca.registry import Registry

_EMD_MAX_ITER = 10_000_000  # network-simplex pivot cap: headroom over POT's default of 1e5
_GAUSSIAN_PAIR_BUDGET = 2**26  # elements of the (rows, C_b, d, d) block built at once

LabelDistanceFn = Callable[..., Tensor]
LABEL_DISTANCES: Registry[LabelDistanceFn] = Registry("label distance")


class LabelDistances(NamedTuple):
    distances: Tensor  # (C_a, C_b), squared W_2, detached
    classes_a: Tensor  # (C_a,) sorted label ids of side a
    classes_b: Tensor  # (C_b,) sorted label ids of side b


def class_groups(
    features: Tensor, labels: Tensor, cap: int | None = None, seed: int = 0
) -> tuple[Tensor, list[Tensor]]:
    """Split features by label: (sorted class ids, one (n_c, d) tensor per class).

    With `cap`, a class larger than `cap` keeps a random subset of `cap` rows drawn with a CPU
    torch.Generator seeded by `seed` (one generator per call, so equal inputs give equal draws).
    """
    classes, inverse = torch.unique(labels, sorted=True, return_inverse=True)
    generator = torch.Generator().manual_seed(seed)
    groups = []
    for k in range(len(classes)):
        rows = (inverse == k).nonzero(as_tuple=True)[0]  # (n_c,)
        if cap is not None and len(rows) > cap:
            keep = torch.randperm(len(rows), generator=generator)[:cap].to(rows.device)
            rows = rows[keep]  # (cap,)
        groups.append(features[rows])
    return classes, groups


def _pairs(count_a: int, count_b: int, same: bool) -> list[tuple[int, int]]:
    """Index pairs to compute; on identical sides only the strict upper triangle."""
    if same:
        return [(i, j) for i in range(count_a) for j in range(i + 1, count_b)]
    return [(i, j) for i in range(count_a) for j in range(count_b)]


def _fill(
    values: dict[tuple[int, int], float], count_a: int, count_b: int, same: bool
) -> np.ndarray:
    """Matrix (C_a, C_b) from per-pair values, mirrored (zero diagonal) on identical sides."""
    out = np.zeros((count_a, count_b))
    for (i, j), value in values.items():
        out[i, j] = value
        if same:
            out[j, i] = value
    return out


@LABEL_DISTANCES.register("exact")
def exact_distances(groups_a: list[Tensor], groups_b: list[Tensor], same: bool) -> Tensor:
    """Exact W_2^2 between every pair of class samples, solved in float64 on the CPU."""
    import ot  # imported on use: POT pulls in scikit-learn, seconds at startup

    cpu_a = [x.detach().to("cpu", torch.float64) for x in groups_a]
    cpu_b = cpu_a if same else [x.detach().to("cpu", torch.float64) for x in groups_b]
    values = {}
    for i, j in _pairs(len(groups_a), len(groups_b), same):
        xa, xb = cpu_a[i], cpu_b[j]
        cost = squared_distances(xa, xb).numpy()  # (n_i, m_j)
        wa = np.full(len(xa), 1.0 / len(xa))
        wb = np.full(len(xb), 1.0 / len(xb))
        values[(i, j)] = float(ot.emd2(wa, wb, cost, numItermax=_EMD_MAX_ITER))
    return torch.from_numpy(_fill(values, len(groups_a), len(groups_b), same))


@LABEL_DISTANCES.register("sinkhorn")
def sinkhorn_distances(
    groups_a: list[Tensor],
    groups_b: list[Tensor],
    same: bool,
    *,
    epsilon: float = 0.1,
    max_iter: int = 1000,
    tol: float = 1e-6,
) -> Tensor:
    """Debiased Sinkhorn divergence S_eps between every pair of classes (squared units).

    The self terms OT_eps(alpha_i, alpha_i) are computed once per class, not once per pair.
    """

    def entropic(xa: Tensor, xb: Tensor, symmetric: bool = False) -> float:
        cost = squared_distances(xa.detach(), xb.detach())  # (n_i, m_j)
        value = sinkhorn_cost(
            cost, epsilon=epsilon, max_iter=max_iter, tol=tol, symmetric=symmetric
        )
        return float(value)

    self_a = [entropic(x, x, symmetric=True) for x in groups_a]
    self_b = self_a if same else [entropic(x, x, symmetric=True) for x in groups_b]
    values = {
        (i, j): entropic(groups_a[i], groups_b[j]) - 0.5 * self_a[i] - 0.5 * self_b[j]
        for i, j in _pairs(len(groups_a), len(groups_b), same)
    }
    return torch.from_numpy(_fill(values, len(groups_a), len(groups_b), same))


def _gaussian_moments(groups: list[Tensor], ridge: float) -> tuple[Tensor, Tensor]:
    """Means (C, d) and biased covariances (1/n_c, plus ridge * I) (C, d, d) in float64."""
    means, covariances = [], []
    for x in groups:
        x = x.detach().to(torch.float64)
        mean = x.mean(dim=0)  # (d,)
        centred = x - mean  # (n_c, d)
        cov = centred.T @ centred / len(x)  # (d, d)
        means.append(mean)
        covariances.append(cov + ridge * torch.eye(x.shape[1], dtype=x.dtype, device=x.device))
    return torch.stack(means), torch.stack(covariances)


def _psd_sqrt(matrices: Tensor) -> Tensor:
    """Symmetric square roots of a batch of PSD matrices (..., d, d) via eigh."""
    eigenvalues, eigenvectors = torch.linalg.eigh(matrices)
    roots = eigenvalues.clamp_min(0.0).sqrt().unsqueeze(-2)  # (..., 1, d)
    return (eigenvectors * roots) @ eigenvectors.transpose(-1, -2)


@LABEL_DISTANCES.register("gaussian")
def gaussian_distances(
    groups_a: list[Tensor], groups_b: list[Tensor], same: bool, *, ridge: float = 1e-6
) -> Tensor:
    """Bures-Wasserstein W_2^2 between Gaussians fitted to each class, in float64.

    Each covariance is the biased estimate (divide by n_c, as POT's empirical Bures functions
    do) plus `ridge` * I, which keeps one-sample or rank-deficient classes well conditioned
    (high-dimensional features with few samples per class are rank-deficient). All pairs are
    batched: one eigh per class for S_i^1/2, then batched eigvalsh of S_i^1/2 S_j S_i^1/2.
    """
    means_a, cov_a = _gaussian_moments(groups_a, ridge)
    means_b, cov_b = (means_a, cov_a) if same else _gaussian_moments(groups_b, ridge)
    sqrt_a = _psd_sqrt(cov_a)  # (C_a, d, d)
    count_b, dim = len(groups_b), cov_b.shape[-1]
    rows_per_block = max(1, _GAUSSIAN_PAIR_BUDGET // max(1, count_b * dim * dim))
    cross_traces = []
    for start in range(0, len(groups_a), rows_per_block):
        roots = sqrt_a[start : start + rows_per_block].unsqueeze(1)  # (r, 1, d, d)
        inner = roots @ cov_b.unsqueeze(0) @ roots  # (r, C_b, d, d)
        inner = 0.5 * (inner + inner.transpose(-1, -2))  # symmetrise against rounding
        eigenvalues = torch.linalg.eigvalsh(inner)  # (r, C_b, d)
        cross_traces.append(eigenvalues.clamp_min(0.0).sqrt().sum(dim=-1))  # (r, C_b)
    cross_trace = torch.cat(cross_traces)  # (C_a, C_b)
    trace_a = torch.diagonal(cov_a, dim1=-2, dim2=-1).sum(-1)  # (C_a,)
    trace_b = torch.diagonal(cov_b, dim1=-2, dim2=-1).sum(-1)  # (C_b,)
    mean_term = squared_distances(means_a, means_b)  # (C_a, C_b)
    bures = trace_a.unsqueeze(1) + trace_b.unsqueeze(0) - 2.0 * cross_trace  # (C_a, C_b)
    distances = (mean_term + bures).clamp_min(0.0)
    if same:
        distances = 0.5 * (distances + distances.T)
        distances.fill_diagonal_(0.0)
    return distances


def _options_of(fn: LabelDistanceFn) -> list[str]:
    params = inspect.signature(fn).parameters.values()
    return [p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY]


def label_distances(
    xa: Tensor,
    ya: Tensor,
    xb: Tensor,
    yb: Tensor,
    kind: str = "exact",
    *,
    max_samples_per_class: int | None = 500,
    seed: int = 0,
    **opts: Any,
) -> LabelDistances:
    """Squared W_2 between every class of (xa, ya) and every class of (xb, yb), detached.

    xa: (n, d), ya: (n,) integer labels; xb: (m, d), yb: (m,). Returns `LabelDistances` with the
    (C_a, C_b) matrix in the dtype and on the device of `xa`, and the sorted class ids.
    Classes of a and b are different labels even when their ids coincide.

    `max_samples_per_class` caps each class for the sample-based kinds ("exact", "sinkhorn") by
    a seeded random subset; "gaussian" fits its moments on every point, which costs O(n d^2).
    When `xa is xb and ya is yb`, the matrix is computed as symmetric with a zero diagonal.
    `opts` are the kind's options: "sinkhorn" takes epsilon, max_iter, tol; "gaussian" ridge.

    Raises ValueError for an unknown kind (listing the valid ones) or an unknown option.
    """
    fn = LABEL_DISTANCES.get(kind)
    unknown = sorted(set(opts) - set(_options_of(fn)))
    if unknown:
        valid = ", ".join(_options_of(fn)) or "none"
        raise ValueError(f"label distance {kind!r}: unknown option(s) {unknown}; valid: {valid}")
    same = xa is xb and ya is yb
    cap = None if kind == "gaussian" else max_samples_per_class
    classes_a, groups_a = class_groups(xa, ya, cap, seed)
    classes_b, groups_b = (classes_a, groups_a) if same else class_groups(xb, yb, cap, seed)
    distances = fn(groups_a, groups_b, same, **opts)
    distances = distances.to(device=xa.device, dtype=xa.dtype).detach()
    return LabelDistances(distances, classes_a, classes_b)
