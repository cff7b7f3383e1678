"""The "gaussian" inner kind: Bures-Wasserstein W_2^2 between Gaussians fitted to classes,

    W_ij = |mu_i - mu_j|^2 + tr S_i + tr S_j - 2 tr (S_i^1/2 S_j S_i^1/2)^1/2.

A side's state is everything that depends on that side alone: per-class means, covariances
(biased, 1/n_c, as POT's empirical Bures functions, plus ridge * I, which keeps one-sample
or rank-deficient classes well conditioned), their traces and their symmetric square roots
S_i^1/2 (one eigh per class). OTDD computes its source's state once. A pair then costs the
product S_i^1/2 S_j S_i^1/2 and one eigvalsh, with the square root taken on the side that
comes first (the source, whose roots are cached). Float64 throughout, except that float32
features get float32 pair matrices (see `gaussian_moments`).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from orca.otdd.inner import INNER_KINDS, InnerKind, all_pairs, upper_pairs

_GAUSSIAN_PAIR_BUDGET = 2**24  # elements of the (pairs, d, d) blocks built at once


class GaussianMoments(NamedTuple):
    means: Tensor  # (C, d) float64
    traces: Tensor  # (C,) float64, tr S_c (ridge included)
    covariances: Tensor  # (C, d, d) S_c, in the pair precision (see `gaussian_moments`)
    roots: Tensor  # (C, d, d) S_c^1/2, in the pair precision

    def to(self, device: torch.device | str) -> GaussianMoments:
        return GaussianMoments(*(t.to(device) for t in self))


def _psd_sqrt(matrices: Tensor) -> Tensor:
    """Symmetric square roots of a batch of PSD matrices (..., d, d) via eigh."""
    eigenvalues, eigenvectors = torch.linalg.eigh(matrices)
    roots = eigenvalues.clamp_min(0.0).sqrt().unsqueeze(-2)  # (..., 1, d)
    return (eigenvectors * roots) @ eigenvectors.transpose(-1, -2)


def gaussian_moments(groups: list[Tensor], ridge: float) -> GaussianMoments:
    """The moments of each class (n_c, d). Means, covariances and traces are accumulated in
    float64. The matrices the pairs work with (covariances and their square roots) are kept
    in float64, or in float32 when every class comes as float32 (or narrower) features: the
    O(d^3) work of a pair (two products and an eigenvalue solve) then runs about twice as
    fast, and tr (S_i^1/2 S_j S_i^1/2)^1/2 stays within about 1e-6 relative of float64 (as
    checked on d=768 classes), far below what float32 features resolve."""
    single = all(torch.finfo(x.dtype).bits <= 32 for x in groups)
    means, covariances = [], []
    for x in groups:
        x = x.detach().to(torch.float64)
        mean = x.mean(dim=0)  # (d,)
        centred = x - mean  # (n_c, d)
        covariance = centred.T @ centred / len(x)  # (d, d)
        covariance.diagonal().add_(ridge)
        means.append(mean)
        covariances.append(covariance)
    covariances = torch.stack(covariances)  # (C, d, d)
    traces = torch.diagonal(covariances, dim1=-2, dim2=-1).sum(-1)  # (C,)
    covariances = covariances.to(torch.float32 if single else torch.float64)
    return GaussianMoments(torch.stack(means), traces, covariances, _psd_sqrt(covariances))


def cross_traces(a: GaussianMoments, b: GaussianMoments, pairs: list[tuple[int, int]]) -> Tensor:
    """tr (S_i^1/2 S_j S_i^1/2)^1/2 for each (i of a, j of b) in pairs, (P,) float64, with
    the products and eigenvalues in the wider of the two sides' pair precisions."""
    precision = torch.promote_types(a.roots.dtype, b.covariances.dtype)
    dim = a.covariances.shape[-1]
    per_block = max(1, _GAUSSIAN_PAIR_BUDGET // max(1, dim * dim))
    out = []
    for start in range(0, len(pairs), per_block):
        chunk = pairs[start : start + per_block]
        rows = torch.tensor([i for i, _ in chunk], device=a.roots.device)
        columns = torch.tensor([j for _, j in chunk], device=a.roots.device)
        roots = a.roots[rows].to(precision)  # (P, d, d)
        inner = roots @ b.covariances[columns].to(precision) @ roots  # (P, d, d)
        inner = 0.5 * (inner + inner.transpose(-1, -2))  # symmetrise against rounding
        eigenvalues = torch.linalg.eigvalsh(inner).double()  # (P, d)
        out.append(eigenvalues.clamp_min(0.0).sqrt().sum(dim=-1))
    if not out:
        return a.traces.new_zeros(0)
    return torch.cat(out)


def _bures(a: GaussianMoments, b: GaussianMoments, cross: Tensor) -> Tensor:
    """W (C_a, C_b) from the moments and the cross traces (C_a, C_b)."""
    mean_term = (a.means.unsqueeze(1) - b.means.unsqueeze(0)).pow(2).sum(-1)  # (C_a, C_b)
    bures = a.traces.unsqueeze(1) + b.traces.unsqueeze(0) - 2.0 * cross
    return (mean_term + bures).clamp_min(0.0)


@INNER_KINDS.register("gaussian")
class GaussianInner(InnerKind):
    """Bures-Wasserstein between class Gaussians fitted on every point (O(n d^2))."""

    sample_based = False

    def __init__(self, *, ridge: float = 1e-6):
        self.ridge = ridge

    def prepare(self, side, own):
        return gaussian_moments([side.members(k) for k in range(side.count)], self.ridge)

    def within(self, side, state, own, pairs=None):
        # closed form and cheap: every pair is computed whatever `pairs` asks for
        pairs = upper_pairs(side.count)
        cross = torch.diag(state.traces)  # on the diagonal the distance is 0
        if pairs:
            traces = cross_traces(state, state, pairs)
            rows = torch.tensor([i for i, _ in pairs], device=cross.device)
            columns = torch.tensor([j for _, j in pairs], device=cross.device)
            cross[rows, columns] = traces
            cross[columns, rows] = traces
        distances = _bures(state, state, cross)
        distances = 0.5 * (distances + distances.T)
        return distances.fill_diagonal_(0.0)

    def between(self, a, state_a, b, state_b, cross):
        state_a = state_a.to(state_b.means.device)
        pairs = all_pairs(a.count, b.count)
        traces = cross_traces(state_a, state_b, pairs).view(a.count, b.count)
        return _bures(state_a, state_b, traces)
