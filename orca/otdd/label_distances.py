"""Label-to-label distances: squared W_2 between the class-conditional feature distributions.

Notation
    X_a (n, d), y_a (n,)   side a: features and integer labels
    X_b (m, d), y_b (m,)   side b
    C_a, C_b               numbers of distinct labels on each side (sorted ascending)
    alpha_i                empirical distribution of the rows of X_a with the i-th label of a
    W (C_a, C_b)           W[i, j] = W_2(alpha_i, beta_j)^2, a SQUARED distance

Three kinds are registered in `INNER_KINDS` (choose with `kind=`):
    "exact"     exact OT (network simplex, POT's `ot.emd2`) with squared-Euclidean cost.
    "sinkhorn"  debiased entropic Sinkhorn divergence S_eps with squared-Euclidean cost,
                OT_eps = <P, C> + eps KL (see `orca.otdd.sinkhorn`); eps = 0.1 by default.
    "gaussian"  Bures-Wasserstein: W_2^2 between Gaussians fitted to each class,
                |mu_i - mu_j|^2 + tr(S_i + S_j - 2 (S_i^1/2 S_j S_i^1/2)^1/2).

The kinds themselves live in `orca.otdd.inner` and `orca.otdd.bures`, where the work that
depends on one side only is split from the work on pairs (OTDD reuses the former for its
fixed source); the package's `__init__` imports both, so every kind is registered once
anything in `orca.otdd` is imported. Every result is detached: in OTDD the gradient reaches
features only through the feature term.
"""

from __future__ import annotations

import inspect
from typing import Any, NamedTuple

import torch
from torch import Tensor

from orca.otdd.grouping import Side, class_layout
from orca.otdd.inner import INNER_KINDS, Blocks, InnerKind

__all__ = ["INNER_KINDS", "LabelDistances", "class_groups", "inner_kind", "label_distances"]


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
    layout = class_layout(labels, cap, seed)
    order = layout.order.to(features.device)
    groups = [
        features[order[start : start + size]]
        for start, size in zip(layout.starts, layout.inner, strict=True)
    ]
    return layout.classes, groups


def _options_of(kind: type[InnerKind]) -> list[str]:
    params = inspect.signature(kind).parameters.values()
    return [p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY]


def inner_kind(kind: str, **opts: Any) -> InnerKind:
    """The registered kind `kind`, built with its options. Raises ValueError for an unknown
    kind (listing the valid ones) or an unknown option (listing the valid options)."""
    cls = INNER_KINDS.get(kind)
    unknown = sorted(set(opts) - set(_options_of(cls)))
    if unknown:
        valid = ", ".join(_options_of(cls)) or "none"
        raise ValueError(f"label distance {kind!r}: unknown option(s) {unknown}; valid: {valid}")
    return cls(**opts)


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
    a seeded random subset (that of `class_groups`); "gaussian" fits its moments on every
    point, which costs O(n d^2).
    When `xa is xb and ya is yb`, the matrix is computed as symmetric with a zero diagonal.
    `opts` are the kind's options: "sinkhorn" takes epsilon, max_iter, tol; "gaussian" ridge.

    Raises ValueError for an unknown kind (listing the valid ones) or an unknown option.
    """
    inner = inner_kind(kind, **opts)
    same = xa is xb and ya is yb
    cap = max_samples_per_class if inner.sample_based else None
    side_a = Side(xa.detach(), ya, cap, seed)
    side_b = side_a if same else Side(xb.detach(), yb, cap, seed)
    with torch.no_grad():
        if same:
            own = Blocks.of_samples(side_a) if inner.sample_based else None
            distances = inner.within(side_a, inner.prepare(side_a, own), own)
        else:
            state_a, state_b = inner.prepare(side_a, None), inner.prepare(side_b, None)
            cross = Blocks.of_samples(side_a, side_b) if inner.sample_based else None
            distances = inner.between(side_a, state_a, side_b, state_b, cross)
    distances = distances.to(device=xa.device, dtype=xa.dtype)
    return LabelDistances(distances, side_a.layout.classes, side_b.layout.classes)
