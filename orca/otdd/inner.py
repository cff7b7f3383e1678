"""Label-to-label (inner) distances between the classes of sides in class layout, by kind.

Notation (the quantities are described in `orca.otdd.label_distances`)
    side a, side b   `Side`s (points in class layout), with C_a and C_b classes
    block(i, j)      squared distances between the inner samples of class i of a and class j
                     of b; a `Blocks` hands out views of one matrix, either the full distance
                     matrix OTDD needs anyway or one built over the inner samples only
    state            what a kind computes from ONE side alone (Sinkhorn self terms, Gaussian
                     moments); computed once per side, so OTDD computes its source's once

Each kind (a class registered in `INNER_KINDS`, constructed with its options) has
    prepare(side, own)                     -> state     (own: the side's Blocks with itself,
                                                         or None to build the diagonal ones)
    within(side, state, own, pairs)        -> W (C, C), symmetric, zero diagonal; pairs
                                                         (i < j) limits the work to those
                                                         pairs, the others are NaN (None:
                                                         every pair)
    between(a, state_a, b, state_b, cross) -> W (C_a, C_b)
W is float64, detached, a SQUARED distance.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
from torch import Tensor

from orca.otdd.costs import centred, distance_matrix
from orca.otdd.exact import batches, emd_plan, warm_potentials
from orca.otdd.grouping import Side
from orca.otdd.solver import entropic_values, solve_blocks
from orca.registry import Registry

_EMD_MAX_ITER = 10_000_000  # network-simplex pivot cap: headroom over POT's default of 1e5

INNER_KINDS: Registry[type[InnerKind]] = Registry("inner kind")


class Blocks:
    """Views block(i, j) (rows_i, cols_j) of one distance matrix, by class pair."""

    def __init__(self, matrix, row_starts, row_sizes, column_starts, column_sizes) -> None:
        self.matrix = matrix  # (N_a, N_b)
        self.rows = list(zip(row_starts, row_sizes, strict=True))
        self.columns = list(zip(column_starts, column_sizes, strict=True))

    def __call__(self, i: int, j: int) -> Tensor:
        (row, rows), (column, columns) = self.rows[i], self.columns[j]
        return self.matrix[row : row + rows, column : column + columns]

    @classmethod
    def of_layouts(cls, a: Side, b: Side, matrix: Tensor) -> Blocks:
        """Blocks of the full distance matrix (len(a), len(b)) of two layouts."""
        la, lb = a.layout, b.layout
        return cls(matrix, la.starts, la.inner, lb.starts, lb.inner)

    @classmethod
    def of_samples(cls, a: Side, b: Side | None = None) -> Blocks:
        """Blocks of a matrix computed over the inner samples only (b None: a with itself)."""
        sample_a = torch.cat([a.inner_sample(k) for k in range(a.count)])  # (K_a, d)
        sample_b = None if b is None else torch.cat([b.inner_sample(k) for k in range(b.count)])
        matrix = distance_matrix(centred(sample_a), sample_b)  # (K_a, K_b)
        b = a if b is None else b
        starts_a = np.cumsum([0, *a.layout.inner[:-1]]).tolist()
        starts_b = np.cumsum([0, *b.layout.inner[:-1]]).tolist()
        return cls(matrix, starts_a, a.layout.inner, starts_b, b.layout.inner)


def own_blocks(side: Side, own: Blocks | None) -> list[Tensor]:
    """block(k, k) of the side with itself, for every class k (built per class if needed)."""
    if own is not None:
        return [own(k, k) for k in range(side.count)]
    return [distance_matrix(centred(side.inner_sample(k))) for k in range(side.count)]


def upper_pairs(count: int) -> list[tuple[int, int]]:
    return [(i, j) for i in range(count) for j in range(i + 1, count)]


def requested(side: Side, pairs: list[tuple[int, int]] | None):
    """The pairs a `within` computes, and the value of the others (NaN when only some are
    asked for)."""
    if pairs is None:
        return upper_pairs(side.count), 0.0
    return pairs, math.nan


def all_pairs(count_a: int, count_b: int) -> list[tuple[int, int]]:
    return [(i, j) for i in range(count_a) for j in range(count_b)]


def filled(
    values: list[float], pairs: list[tuple[int, int]], shape, mirror: bool, rest: float = 0.0
) -> Tensor:
    """A float64 (C_a, C_b) matrix with values at pairs (mirrored, zero diagonal, if asked)
    and `rest` elsewhere."""
    out = torch.full(shape, rest, dtype=torch.float64)
    if mirror:
        out.fill_diagonal_(0.0)
    if pairs:
        rows = torch.tensor([i for i, _ in pairs])
        columns = torch.tensor([j for _, j in pairs])
        data = torch.tensor(values, dtype=torch.float64)
        out[rows, columns] = data
        if mirror:
            out[columns, rows] = data
    return out


class InnerKind:
    """Base of the kinds. `sample_based` kinds cap each class at max_samples_per_class and
    work on distance blocks; the others see every point of a class and no blocks."""

    sample_based = True

    def prepare(self, side: Side, own: Blocks | None) -> Any:
        return None

    def within(self, side: Side, state: Any, own: Blocks | None, pairs=None) -> Tensor:
        raise NotImplementedError

    def between(self, a: Side, state_a: Any, b: Side, state_b: Any, cross: Blocks | None):
        raise NotImplementedError


@INNER_KINDS.register("exact")
class ExactInner(InnerKind):
    """Exact W_2^2 between class samples, one exact OT problem per pair of classes on its
    squared-distance block (see `exact_values`); nothing else is shared between pairs."""

    def within(self, side, state, own, pairs=None):
        pairs, rest = requested(side, pairs)
        values = exact_values([own(i, j) for i, j in pairs])
        return filled(values, pairs, (side.count, side.count), mirror=True, rest=rest)

    def between(self, a, state_a, b, state_b, cross):
        pairs = all_pairs(a.count, b.count)
        values = exact_values([cross(i, j) for i, j in pairs])
        return filled(values, pairs, (a.count, b.count), mirror=False)


def exact_values(blocks: list[Tensor]) -> list[float]:
    """min_P <P, block> with uniform weights, for each cost block (n_i, m_j): POT's network
    simplex on a float64 CPU copy, warm-started from entropic potentials (`orca.otdd.exact`).
    The problems are independent and spread over torch.get_num_threads() threads (the
    solver releases the GIL)."""
    starts = warm_potentials(blocks)

    def solve(k: int) -> float:
        cost = blocks[k].detach().to("cpu", torch.float64).contiguous().numpy()  # (n, m)
        plan = emd_plan(cost, starts[k], _EMD_MAX_ITER)
        return float((plan * cost).sum())

    return threaded_map(solve, list(range(len(blocks))))


def threaded_map(fn: Callable[[Any], Any], items: list[Any]) -> list[Any]:
    """[fn(item) for item in items] on up to torch.get_num_threads() threads, in order."""
    workers = min(torch.get_num_threads(), len(items))
    if workers <= 1:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(fn, items))


@INNER_KINDS.register("sinkhorn")
class SinkhornInner(InnerKind):
    """Debiased Sinkhorn divergence S_eps(alpha_i, beta_j) = OT_eps(i, j) - 1/2 OT_eps(i, i)
    - 1/2 OT_eps(j, j). The self terms are a side's state: one symmetric problem per class,
    computed once per side. The cross problems of all pairs are solved as batches through the
    shared solver loop (classes zero-padded to one size; padding has weight 0)."""

    def __init__(self, *, epsilon: float = 0.1, max_iter: int = 1000, tol: float = 1e-6):
        self.solver = {"epsilon": epsilon, "max_iter": max_iter, "tol": tol}

    def prepare(self, side, own):
        values = batched_entropic(own_blocks(side, own), symmetric=True, **self.solver)
        return torch.tensor(values, dtype=torch.float64)  # (C,) OT_eps(alpha_k, alpha_k)

    def within(self, side, state, own, pairs=None):
        pairs, rest = requested(side, pairs)
        cross = batched_entropic([own(i, j) for i, j in pairs], symmetric=False, **self.solver)
        values = [
            v - 0.5 * float(state[i] + state[j]) for v, (i, j) in zip(cross, pairs, strict=True)
        ]
        return filled(values, pairs, (side.count, side.count), mirror=True, rest=rest)

    def between(self, a, state_a, b, state_b, cross):
        pairs = all_pairs(a.count, b.count)
        values = batched_entropic([cross(i, j) for i, j in pairs], symmetric=False, **self.solver)
        values = [
            v - 0.5 * float(state_a[i] + state_b[j])
            for v, (i, j) in zip(values, pairs, strict=True)
        ]
        return filled(values, pairs, (a.count, b.count), mirror=False)


def batched_entropic(
    blocks: list[Tensor], symmetric: bool, epsilon: float, max_iter: int, tol: float
) -> list[float]:
    """OT_eps (uniform weights) of each cost block, solved in as few batches as
    `orca.otdd.exact.PAIR_BUDGET` allows (the blocks are zero-padded to the largest shape,
    without being copied: see `solve_blocks`)."""
    values: list[float] = []
    for chunk in batches(blocks) if blocks else []:
        solution = solve_blocks(chunk, epsilon, max_iter, tol, symmetric, "inner kernel")
        values.extend(entropic_values(solution, epsilon).tolist())
    return values
