"""Dense squared-distance matrices built without autograd, and the label term of OTDD's cost.

Notation
    X_a (n, d), X_b (m, d)   the two point sets; D (n, m), D_ij = ||x_i - x'_j||^2
    W (C_a, C_b)             label distances; label cost of (i, j) is W[class of i, class of j]

The outer problem's cost is M = s (D + W[class of i, class of j]), with the factor s of
a cost convention in COST_CONVENTIONS (OTDDConfig.cost): "squared", s = 1 (orca's), or
"half", s = 1/2 (the convention of the OTDD library the authors' stage 2 uses: geomloss's
p = 2 cost ||x - x'||^2 / 2, and W divided by p = 2 to match). The label distances W
themselves are computed on the unscaled D in both. OTDD applies s without touching M:
OT_eps(s M) = s OT_(eps/s)(M) with the same plan, so it solves on M with eps / s and
multiplies the value and the gradient by s.

Both are written into one preallocated (n, m) buffer: D block by block with one matrix
product per block (|x|^2 + |y|^2 - 2 x.y, after shifting both sets by the mean of X_a, which
leaves distances unchanged and limits cancellation), then W added in place one class run at a
time (the rows of a class are contiguous in a `ClassLayout`). A set against itself is computed
as its block upper triangle and mirrored, so it costs about half and is exactly symmetric.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from orca.otdd.grouping import Side
from orca.otdd.scratch import scratch
from orca.registry import Registry

_SYMMETRIC_BLOCKS = 8  # row blocks of a self-distance matrix: ~(1 + 1/8) / 2 of the products

# cost convention name -> the factor s of the outer cost M = s (D + W) (see the docstring)
COST_CONVENTIONS: Registry[float] = Registry("cost convention")
COST_CONVENTIONS.register("squared", 1.0)
COST_CONVENTIONS.register("half", 0.5)


class Centred(NamedTuple):
    """Points shifted by their mean, with their squared norms (what a distance matrix reuses)."""

    points: Tensor  # (n, d), x - shift
    shift: Tensor  # (1, d)
    norms: Tensor  # (n,), |x - shift|^2


def centred(points: Tensor) -> Centred:
    """Detached `points` (n, d) shifted by their mean, with squared norms."""
    with torch.no_grad():
        shift = points.detach().mean(dim=0, keepdim=True)  # (1, d)
        shifted = points.detach() - shift
        return Centred(shifted, shift, (shifted * shifted).sum(dim=1))


def distance_matrix(
    left: Centred, right: Tensor | None = None, block: int = 4096, name: str | None = None
) -> Tensor:
    """D (n, m) between `left`'s points and `right` (m, d), or `left` against itself when
    `right` is None (then symmetric with an exact zero diagonal). No autograd. With `name`,
    D is written into that scratch buffer (see `orca.otdd.scratch`)."""
    with torch.no_grad():
        a, sq_a = left.points, left.norms
        if right is None:
            b, sq_b = a, sq_a
            block = min(block, max(256, math.ceil(len(a) / _SYMMETRIC_BLOCKS)))
        else:
            b = right.detach().to(a.dtype) - left.shift
            sq_b = (b * b).sum(dim=1)
        n, m = len(a), len(b)
        out = scratch(name, (n, m), a)
        for start in range(0, n, block):
            stop = min(n, start + block)
            first = start if right is None else 0  # the lower triangle is mirrored
            part = out[start:stop, first:]  # (rows, m - first), written in place
            torch.addmm(sq_b[first:].unsqueeze(0), a[start:stop], b[first:].T, alpha=-2.0, out=part)
            part.add_(sq_a[start:stop].unsqueeze(1)).clamp_min_(0.0)
            if right is None:
                square = out[start:stop, start:stop]
                square.copy_((square + square.T).mul_(0.5)).fill_diagonal_(0.0)
                out[stop:, start:stop] = out[start:stop, stop:].T
        return out


def add_label_costs(cost: Tensor, labels: Tensor, rows: Side, columns: Side) -> Tensor:
    """cost (n, m) += W[class of row i, class of column j], in place; returns `cost`.

    labels: W (C_rows, C_cols); rows and columns are the two sides in layout order."""
    with torch.no_grad():
        labels = labels.to(device=cost.device, dtype=cost.dtype)
        column_index = columns.layout.index.to(cost.device)  # (m,)
        for k in range(rows.count):
            cost[rows.class_rows(k)].add_(labels[k][column_index])  # (m,) over the rows
    return cost


def pairs_within_reach(distances: Tensor, side: Side, reach: float) -> list[tuple[int, int]]:
    """The class pairs (i, j), i < j, of a side whose closest points are nearer than `reach`:
    min D over the rows of class i and the columns of class j, for D (N, N) the side's
    distance matrix in layout order. One pass over D."""
    index = side.layout.index.to(distances.device)  # (N,) class of each column
    pairs = []
    with torch.no_grad():
        for i in range(side.count - 1):
            nearest = distances[side.class_rows(i)].amin(dim=0)  # (N,) per column
            per_class = torch.full((side.count,), math.inf, dtype=nearest.dtype)
            per_class = per_class.to(nearest.device).scatter_reduce(0, index, nearest, "amin")
            pairs += [(i, j) for j in range(i + 1, side.count) if float(per_class[j]) < reach]
    return pairs
