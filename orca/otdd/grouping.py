"""Labelled point sets laid out class by class, so that every class is a contiguous run.

Notation
    N                 points of one side; C its number of distinct labels (sorted ascending)
    order (N,)        the input rows in layout order: class 0's rows, then class 1's, ...
    starts, sizes     first layout row and number of points of each class
    inner             points of each class that enter the inner (class-to-class) problems:
                      min(size, cap); they are the FIRST rows of the class's run

Within a class, rows keep their input order, except that a class larger than `cap` is
shuffled by a seeded CPU generator (one per layout, consumed class by class), and its first
`cap` rows form the inner sample. This is exactly the draw of `class_groups`, so a layout's
inner samples are the groups `class_groups` returns.

Because classes are contiguous, the squared distances between the inner samples of class i
of side a and class j of side b are the sub-block
    D[starts_a[i] : starts_a[i] + inner_a[i], starts_b[j] : starts_b[j] + inner_b[j]]
of the full (N_a, N_b) distance matrix D of the two layouts, so the inner problems need no
distances of their own once D is there. OT values do not depend on the order of the points.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor


class ClassLayout(NamedTuple):
    order: Tensor  # (N,) input rows in layout order
    classes: Tensor  # (C,) sorted label ids
    index: Tensor  # (N,) class position 0..C-1 of each row, in layout order
    starts: list[int]  # (C,) first layout row of each class
    sizes: list[int]  # (C,) points of each class
    inner: list[int]  # (C,) points of each class in the inner sample, min(size, cap)


def class_layout(labels: Tensor, cap: int | None = None, seed: int = 0) -> ClassLayout:
    """The class-by-class layout of `labels` (N,), with inner samples of at most `cap`."""
    classes, inverse = torch.unique(labels, sorted=True, return_inverse=True)
    order = torch.sort(inverse, stable=True).indices  # (N,), ascending rows within a class
    sizes = torch.bincount(inverse, minlength=len(classes)).tolist()
    starts, inner = [], []
    generator = torch.Generator().manual_seed(seed)
    start = 0
    for size in sizes:
        starts.append(start)
        inner.append(size if cap is None else min(size, cap))
        if cap is not None and size > cap:
            shuffle = torch.randperm(size, generator=generator).to(order.device)
            order[start : start + size] = order[start : start + size][shuffle]
        start += size
    index = torch.repeat_interleave(
        torch.arange(len(classes), device=order.device), torch.tensor(sizes, device=order.device)
    )
    return ClassLayout(order, classes, index, starts, sizes, inner)


class Side:
    """One labelled point set in class layout: `points` (N, d) are the input rows in layout
    order (autograd flows back to the input through the reordering)."""

    def __init__(self, features: Tensor, labels: Tensor, cap: int | None, seed: int) -> None:
        self.layout = class_layout(labels, cap, seed)
        self.points = features[self.layout.order.to(features.device)]  # (N, d)

    def __len__(self) -> int:
        return len(self.points)

    @property
    def count(self) -> int:
        """Number of classes C."""
        return len(self.layout.sizes)

    def inner_sample(self, k: int) -> Tensor:
        """(inner_k, d) detached: the points of class k that enter the inner problems."""
        start = self.layout.starts[k]
        return self.points[start : start + self.layout.inner[k]].detach()

    def members(self, k: int) -> Tensor:
        """(size_k, d) detached: every point of class k."""
        start = self.layout.starts[k]
        return self.points[start : start + self.layout.sizes[k]].detach()

    def inner_rows(self, k: int) -> slice:
        start = self.layout.starts[k]
        return slice(start, start + self.layout.inner[k])

    def class_rows(self, k: int) -> slice:
        start = self.layout.starts[k]
        return slice(start, start + self.layout.sizes[k])

    def to(self, device: torch.device, dtype: torch.dtype) -> Side:
        """The same side with its points on `device` in `dtype` (the layout is shared)."""
        if self.points.device == device and self.points.dtype == dtype:
            return self
        moved = Side.__new__(Side)
        moved.layout = self.layout
        moved.points = self.points.to(device=device, dtype=dtype)
        return moved
