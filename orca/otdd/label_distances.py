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
import itertools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from orca.otdd.sinkhorn import batched_sinkhorn_costs, squared_distances
from orca.registry import Registry

_EMD_MAX_ITER = 10_000_000  # network-simplex pivot cap: headroom over POT's default of 1e5
_GAUSSIAN_PAIR_BUDGET = 2**24  # elements of the (pairs, d, d) blocks built at once
_SINKHORN_PAIR_BUDGET = 2**25  # elements of the (pairs, n_i, m_j) cost block solved at once

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


def _padded(groups: list[Tensor]) -> tuple[list[Tensor], Tensor, Tensor]:
    """The classes, and the same stacked and zero-padded to the largest: points
    (C, n_max, d) and uniform log weights (C, n_max) with -inf on padding."""
    largest = max(len(x) for x in groups)
    first = groups[0]
    points = first.new_zeros(len(groups), largest, first.shape[1])
    log_weights = torch.full(
        (len(groups), largest), -math.inf, dtype=first.dtype, device=first.device
    )
    for k, x in enumerate(groups):
        points[k, : len(x)] = x
        log_weights[k, : len(x)] = -math.log(len(x))
    return groups, points, log_weights


def _pair_costs(groups_a: list[Tensor], points_b: Tensor, pairs: list[tuple[int, int]]) -> Tensor:
    """Squared distances (B, n_max, m_max) between class i of a and the padded class j of b
    for each (i, j) in `pairs`; padded rows are 0, padded columns are left for the caller.

    One matrix product per distinct i, against all its j's at once (in `_pairs` order the
    j's of one i are consecutive), so no per-pair copies of the points are made."""
    batch, rows_max = len(pairs), max(len(x) for x in groups_a)
    cols_max, dim = points_b.shape[1:]
    cost = points_b.new_zeros(batch, rows_max, cols_max)
    done = 0
    for i, run in itertools.groupby(pairs, key=lambda pair: pair[0]):
        js = [j for _, j in run]
        consecutive = js == list(range(js[0], js[0] + len(js)))
        others = points_b[js[0] : js[0] + len(js)] if consecutive else points_b[js]  # (k, m, d)
        xa = groups_a[i]  # (n_i, d)
        block = squared_distances(xa, others.reshape(-1, dim))  # (n_i, k * m_max)
        cost[done : done + len(js), : len(xa)] = block.view(len(xa), len(js), cols_max).transpose(
            0, 1
        )
        done += len(js)
    return cost


def _batched_entropic(
    side_a: tuple[list[Tensor], Tensor, Tensor],
    side_b: tuple[list[Tensor], Tensor, Tensor],
    pairs: list[tuple[int, int]],
    symmetric: bool,
    **solver: Any,
) -> list[float]:
    """OT_eps between class i of side a and class j of side b for each (i, j) in `pairs`,
    solved in batches of at most _SINKHORN_PAIR_BUDGET cost entries."""
    groups_a, points_a, log_a = side_a
    _, points_b, log_b = side_b
    per_pair = points_a.shape[1] * points_b.shape[1]
    batch = max(1, _SINKHORN_PAIR_BUDGET // max(1, per_pair))
    values: list[float] = []
    for start in range(0, len(pairs), batch):
        chunk = pairs[start : start + batch]
        rows = torch.tensor([i for i, _ in chunk], device=points_a.device)
        cols = torch.tensor([j for _, j in chunk], device=points_a.device)
        valid = torch.isfinite(log_a[rows]).unsqueeze(2) & torch.isfinite(log_b[cols]).unsqueeze(1)
        cost = _pair_costs(groups_a, points_b, chunk).masked_fill_(~valid, 0.0)  # (B, n, m)
        batch_values = batched_sinkhorn_costs(
            cost, log_a[rows], log_b[cols], symmetric=symmetric, **solver
        )
        values.extend(batch_values.tolist())
    return values


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
    All pairs are solved together: classes are zero-padded to one size (padding has weight
    0) and the pair problems run as one batch through the shared solver loop.
    """
    solver = {"epsilon": epsilon, "max_iter": max_iter, "tol": tol}
    with torch.no_grad():
        side_a = _padded([x.detach() for x in groups_a])
        side_b = side_a if same else _padded([x.detach() for x in groups_b])
        own_a = [(k, k) for k in range(len(groups_a))]
        self_a = _batched_entropic(side_a, side_a, own_a, symmetric=True, **solver)
        own_b = [(k, k) for k in range(len(groups_b))]
        self_b = self_a if same else _batched_entropic(side_b, side_b, own_b, True, **solver)
        pairs = _pairs(len(groups_a), len(groups_b), same)
        cross = _batched_entropic(side_a, side_b, pairs, symmetric=False, **solver)
    values = {
        (i, j): value - 0.5 * self_a[i] - 0.5 * self_b[j]
        for (i, j), value in zip(pairs, cross, strict=True)
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
    On identical sides only the pairs i < j are computed and mirrored (zero diagonal).
    """
    means_a, cov_a = _gaussian_moments(groups_a, ridge)
    means_b, cov_b = (means_a, cov_a) if same else _gaussian_moments(groups_b, ridge)
    sqrt_a = _psd_sqrt(cov_a)  # (C_a, d, d)
    trace_a = torch.diagonal(cov_a, dim1=-2, dim2=-1).sum(-1)  # (C_a,)
    trace_b = torch.diagonal(cov_b, dim1=-2, dim2=-1).sum(-1)  # (C_b,)
    dim, device = cov_b.shape[-1], cov_b.device
    # tr (S_i^1/2 S_j S_i^1/2)^1/2; on identical sides the diagonal is tr S_i (distance 0)
    cross_trace = torch.diag(trace_a) if same else cov_a.new_zeros(len(groups_a), len(groups_b))
    pairs = _pairs(len(groups_a), len(groups_b), same)
    per_block = max(1, _GAUSSIAN_PAIR_BUDGET // max(1, dim * dim))
    for start in range(0, len(pairs), per_block):
        rows = torch.tensor([i for i, _ in pairs[start : start + per_block]], device=device)
        cols = torch.tensor([j for _, j in pairs[start : start + per_block]], device=device)
        roots = sqrt_a[rows]  # (P, d, d)
        inner = roots @ cov_b[cols] @ roots  # (P, d, d)
        inner = 0.5 * (inner + inner.transpose(-1, -2))  # symmetrise against rounding
        eigenvalues = torch.linalg.eigvalsh(inner)  # (P, d)
        traces = eigenvalues.clamp_min(0.0).sqrt().sum(dim=-1)  # (P,)
        cross_trace[rows, cols] = traces
        if same:
            cross_trace[cols, rows] = traces
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
