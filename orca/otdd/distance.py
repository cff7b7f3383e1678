"""The Optimal Transport Dataset Distance (OTDD; Alvarez-Melis & Fusi, NeurIPS 2020).

Notation
    X_s (n, d), y_s (n,)   source (proxy) features and integer labels; fixed
    X_t (m, d), y_t (m,)   target features (the ones that get a gradient) and labels
    C_s, C_t               source and target classes, sorted; DISJOINT label spaces, so source
                           class 0 and target class 0 are different labels
    W                      label-distance matrix over the union of classes, squared W_2, in
                           blocks W_ss (C_s, C_s), W_st (C_s, C_t), W_tt (C_t, C_t); detached
    M (n, m)               augmented squared cost M_ij = s (||x_i - x'_j||^2 + W[y_i, y'_j]),
                           s the factor of the cost convention (OTDDConfig.cost, from
                           orca.otdd.costs.COST_CONVENTIONS): 1 ("squared", the default) or
                           1/2 ("half", the OTDD library's, which the authors' stage 2 uses)
    P (n, m)               coupling between source and target points
    a (n,), b (m,)         uniform weights 1/n and 1/m
    epsilon                entropic regularisation, in the units of M (squared distance)

Values are SQUARED distances, never W itself:
    outer="exact"     OTDD = min_P <P, M>, the exact OT cost (= ot.emd2(a, b, M)).
    outer="sinkhorn"  OTDD = S_eps = OT_eps(s,t) - 1/2 OT_eps(s,s) - 1/2 OT_eps(t,t), the
                      debiased Sinkhorn divergence, OT_eps = <P, M> + eps KL(P | a x b);
                      OTDD(D, D) = 0.
The gradient reaches X_t only through the feature term ||x - x'||^2, as in the authors' code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from orca.config.base import Config, check_number
from orca.otdd.costs import (
    COST_CONVENTIONS,
    Centred,
    add_label_costs,
    centred,
    distance_matrix,
    pairs_within_reach,
)
from orca.otdd.grouping import Side
from orca.otdd.inner import INNER_KINDS, Blocks, InnerKind
from orca.otdd.label_distances import inner_kind
from orca.otdd.outer import OUTER_KINDS
from orca.otdd.scratch import reserve, scratch_scope
from orca.otdd.sinkhorn import squared_distances
from orca.otdd.solver import EXPONENT_FLOOR, with_gradient

_SELF_REACH_MARGIN = 10.0  # headroom in the self-term potentials' bound (see self_label_distances)


@dataclass(frozen=True)
class OTDDConfig(Config):
    """How OTDD is computed. Validates itself; `to_dict()`/`from_dict()` round-trip."""

    inner: str = "exact"  # a kind in INNER_KINDS (orca.otdd.inner): the label distances
    outer: str = "sinkhorn"  # a kind in OUTER_KINDS (orca.otdd.outer): the outer problem
    epsilon: float = 0.1  # outer (and "sinkhorn" inner) regularisation, squared-distance units
    # Per-side cap on points in the outer problem: a seeded subset stratified by class.
    max_samples: int | None = 5000
    max_samples_per_class: int = 500  # per-class cap in the inner class-to-class problems
    sinkhorn_max_iter: int = 1000
    # L1 error of the row marginal (sum_i |(P 1)_i - a_i|) at which Sinkhorn stops. The value
    # converges far sooner than the plan: at 0.1 the debiased OTDD was within 0.25% of its
    # exact (unregularised) value on 5k x 5k clouds, d = 64, at eps = 0.1, in about 3 s on
    # 2 cores; 1e-3 gave 0.02% in 35-40 s (benchmarks/bench_otdd_reference.py measures the
    # default). Lower it for a converged plan.
    sinkhorn_tol: float = 0.1
    chunk_size: int = 4096  # source rows per block when building M
    seed: int = 0  # seeds every random subsample
    cost: str = "squared"  # a convention in COST_CONVENTIONS: the outer cost's factor s

    def __post_init__(self) -> None:
        INNER_KINDS.check(self.inner, field="inner")
        OUTER_KINDS.check(self.outer, field="outer")
        check_number("epsilon", self.epsilon, minimum=0, exclusive_minimum=True)
        if self.max_samples is not None:
            check_number("max_samples", self.max_samples, minimum=1, integer=True)
        check_number("max_samples_per_class", self.max_samples_per_class, minimum=1, integer=True)
        check_number("sinkhorn_max_iter", self.sinkhorn_max_iter, minimum=1, integer=True)
        check_number("sinkhorn_tol", self.sinkhorn_tol, minimum=0, exclusive_minimum=True)
        check_number("chunk_size", self.chunk_size, minimum=1, integer=True)
        check_number("seed", self.seed, minimum=0, integer=True)
        COST_CONVENTIONS.check(self.cost, field="cost")

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> OTDDConfig:
        """Build from a dict; unknown keys raise ValueError naming them and the valid fields."""
        return super().from_dict(data)


def _check_labelled(side: str, features: Tensor, labels: Tensor) -> None:
    if not isinstance(features, Tensor) or features.ndim != 2:
        raise ValueError(f"{side}_features must be a 2-D tensor (points, dim); got {features!r}")
    if not features.is_floating_point():
        raise ValueError(f"{side}_features must be floating point; got {features.dtype}")
    if not isinstance(labels, Tensor) or labels.ndim != 1:
        raise ValueError(f"{side}_labels must be a 1-D tensor; got {labels!r}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(f"{side}_labels must be an integer tensor; got {labels.dtype}")
    if len(labels) != len(features) or len(features) == 0:
        raise ValueError(
            f"{side}: need as many labels as feature rows (and at least one); "
            f"got {len(features)} rows and {len(labels)} labels"
        )


def class_quotas(counts: Tensor, cap: int) -> Tensor:
    """Points to keep per class (C,) so that they sum to min(cap, counts.sum()) and follow
    the class proportions: floor(cap * share), then the largest remainders get one more
    (ties to the lower class index). No class gets more than it has."""
    total = int(counts.sum())
    if cap >= total:
        return counts.clone()
    exact = counts.double() * cap / total
    quotas = exact.floor().long()
    left = cap - int(quotas.sum())
    order = torch.argsort(-(exact - quotas), stable=True)
    quotas[order[:left]] += 1
    return torch.minimum(quotas, counts)


def subsample(
    features: Tensor, labels: Tensor, cap: int | None, seed: int
) -> tuple[Tensor, Tensor]:
    """At most `cap` rows, a seeded random subset stratified by class (each class keeps its
    share of the rows, `class_quotas`), kept in the original order. Stratifying keeps the
    outer problem's class masses those of the full dataset, which a uniform subset only
    does on average."""
    if cap is None or len(features) <= cap:
        return features, labels
    generator = torch.Generator().manual_seed(seed)
    _, index, counts = torch.unique(
        labels.cpu(), sorted=True, return_inverse=True, return_counts=True
    )
    quotas = class_quotas(counts, cap)
    by_class = torch.argsort(index, stable=True)  # rows grouped by class, (n,)
    starts = torch.cumsum(counts, 0) - counts
    kept = []
    for start, count, quota in zip(starts.tolist(), counts.tolist(), quotas.tolist(), strict=True):
        pick = torch.randperm(count, generator=generator)[:quota]
        kept.append(by_class[start + pick])
    rows = torch.cat(kept).sort().values.to(features.device)  # (cap,)
    return features[rows], labels[rows.to(labels.device)]


def _augmented_cost(
    xa: Tensor, index_a: Tensor, xb: Tensor, index_b: Tensor, label_cost: Tensor, chunk: int
) -> Tensor:
    """M (n, m) = ||xa_i - xb_j||^2 + label_cost[index_a_i, index_b_j] in the given row
    orders, differentiable, built `chunk` rows at a time (for `OTDD.augmented_cost`)."""
    label_cost = label_cost.to(device=xa.device, dtype=xa.dtype)
    label_columns = label_cost[:, index_b]  # (C_a, m)
    blocks = []
    for start in range(0, len(xa), chunk):
        rows = slice(start, start + chunk)
        blocks.append(squared_distances(xa[rows], xb) + label_columns[index_a[rows]])
    return blocks[0] if len(blocks) == 1 else torch.cat(blocks)  # (n, m)


def self_label_distances(
    inner: InnerKind, side: Side, state: Any, own, distances: Tensor, epsilon: float
) -> Tensor:
    """W (C, C) of a side with itself, for its self term OT_eps(side, side), computed only
    for the class pairs that term can feel; the others are NaN (count them as 0).
    `distances` is the side's (N, N) squared-distance matrix in layout order.

    Why a pair can be left out: in the symmetric self problem the potentials stay below
    eps/2 (log N + _SELF_REACH_MARGIN) (at the optimum f_i <= eps/2 log N, from the
    diagonal term of its fixed-point equation), so an entry whose cost is at least
    eps (-EXPONENT_FLOOR + log N + _SELF_REACH_MARGIN) has a kernel exponent below the
    solver's floor, where it is clamped whatever the cost. W >= 0 only adds to the
    distance D, so when the closest points of two classes are that far apart their label
    distance cannot change the kernel, and is not computed. On well-separated classes
    (distances hundreds of times epsilon) this skips every within-side inner problem."""
    reach = epsilon * (-EXPONENT_FLOOR + math.log(len(side)) + _SELF_REACH_MARGIN)
    return inner.within(side, state, own, pairs_within_reach(distances, side, reach))


class OTDD:
    """Holds a fixed (source) labelled dataset and computes OTDD to target datasets.

    Everything that depends on the source alone is computed ONCE, in __init__: its class
    layout (points sorted by class, the per-class inner samples), the shifted source points
    and their squared norms, the inner kind's per-class state (Sinkhorn self terms, or
    Gaussian means, covariances and their square roots), and with outer="sinkhorn" the
    source x source label distances W_ss and the self term OT_eps(s, s). A call computes
    only what involves the target: the (n, m) and (m, m) distance matrices, from whose class
    blocks the inner problems take their costs (no distances of their own), the label
    distances W_st and W_tt, detached, and the outer problems.

    The source keeps a seeded subset of at most `config.max_samples` points, stratified by
    class; each target gets the same treatment per call. Works on any device and floating
    dtype; the source follows the target's at call time. Memory: at most two (n, m)-sized
    buffers at a time (cost and Sinkhorn kernel), plus the inner problems' batches.
    """

    def __init__(
        self, source_features: Tensor, source_labels: Tensor, config: OTDDConfig | None = None
    ) -> None:
        self.config = cfg = config if config is not None else OTDDConfig()
        _check_labelled("source", source_features, source_labels)
        xs, ys = subsample(source_features.detach(), source_labels, cfg.max_samples, cfg.seed)
        self._xs, self._ys = xs, ys
        self._source_index = torch.unique(ys, sorted=True, return_inverse=True)[1]  # (n,)
        options: dict[str, Any] = {}
        if cfg.inner == "sinkhorn":
            options = {"epsilon": cfg.epsilon, "max_iter": cfg.sinkhorn_max_iter}
            options["tol"] = cfg.sinkhorn_tol
        self._inner = inner_kind(cfg.inner, **options)
        self._outer = OUTER_KINDS.get(cfg.outer)
        # The outer problem solves on the unscaled M at eps / s (OT_eps(s M) = s OT_eps/s(M))
        self._cost_scale = COST_CONVENTIONS.get(cfg.cost)
        self._solver_epsilon = cfg.epsilon / self._cost_scale
        self._source = self._side(xs, ys)
        self._source_centred = centred(self._source.points)
        self._moved: dict[tuple[torch.device, torch.dtype], tuple[Side, Centred]] = {}
        # W_ss (C_s, C_s); NaN for class pairs too far apart to matter (self_label_distances)
        self.source_label_distances: Tensor | None = None
        self._source_self_cost: float | None = None  # OT_eps(s, s)
        with torch.no_grad(), scratch_scope():
            if not self._outer.debiased:  # W_ss and OT(s, s) are not needed
                self._source_state = self._inner.prepare(self._source, None)
                return
            cost = distance_matrix(self._source_centred, None, cfg.chunk_size, "outer cost")
            own = self._blocks(self._source, self._source, cost)
            self._source_state = self._inner.prepare(self._source, own)
            labels = self_label_distances(
                self._inner, self._source, self._source_state, own, cost, self._solver_epsilon
            )
            self.source_label_distances = labels.to(device=xs.device, dtype=xs.dtype)
            add_label_costs(cost, labels.nan_to_num(0.0), self._source, self._source)
            self._source_self_cost = float(self._solve(cost, symmetric=True)[0])

    def _side(self, features: Tensor, labels: Tensor) -> Side:
        cap = self.config.max_samples_per_class if self._inner.sample_based else None
        return Side(features, labels, cap, self.config.seed)

    def _blocks(self, a: Side, b: Side, distances: Tensor) -> Blocks | None:
        return Blocks.of_layouts(a, b, distances) if self._inner.sample_based else None

    def _source_like(self, target: Tensor) -> tuple[Side, Centred]:
        """The source side and its shifted points, on the target's device and dtype (cached)."""
        key = (target.device, target.dtype)
        if key not in self._moved:
            moved = Centred(
                *(t.to(device=target.device, dtype=target.dtype) for t in self._source_centred)
            )
            self._moved[key] = (self._source.to(target.device, target.dtype), moved)
        return self._moved[key]

    def _label_distances_within(self, side: Side, state: Any, own, distances: Tensor):
        """W_tt (C_t, C_t) of a target side, where its self term can feel it."""
        return self_label_distances(self._inner, side, state, own, distances, self._solver_epsilon)

    def _label_distances_between(self, target: Side, state: Any, cross: Blocks | None) -> Tensor:
        """W_st (C_s, C_t) between the source and a target side."""
        return self._inner.between(self._source, self._source_state, target, state, cross)

    def _solve(self, cost: Tensor, symmetric: bool = False, points=None):
        """The outer problem of s x `cost` (s: the cost convention's factor) by the
        configured OUTER_KINDS solver: solved on `cost` at eps / s, value and gradient x s."""
        cfg, scale = self.config, self._cost_scale
        value, gradient = self._outer.solve(
            cost, self._solver_epsilon, cfg.sinkhorn_max_iter, cfg.sinkhorn_tol, symmetric, points
        )
        if scale == 1.0:
            return value, gradient
        return value * scale, None if gradient is None else gradient * scale

    def _check_target(self, target_features: Tensor, target_labels: Tensor) -> None:
        _check_labelled("target", target_features, target_labels)
        if target_features.shape[1] != self._xs.shape[1]:
            raise ValueError(
                f"target_features have dim {target_features.shape[1]}, "
                f"source features have dim {self._xs.shape[1]}"
            )

    def augmented_cost(self, target_features: Tensor, target_labels: Tensor) -> Tensor:
        """M (n, m) between the stored source points (in their stored order) and ALL given
        target points (no target subsampling here, given order), in squared-distance units
        times the cost convention's factor; differentiable w.r.t. target_features."""
        self._check_target(target_features, target_labels)
        target = self._side(target_features.detach(), target_labels)
        source, _ = self._source_like(target_features)
        with torch.no_grad():
            state = self._inner.prepare(target, None)
            cross = Blocks.of_samples(source, target) if self._inner.sample_based else None
            labels = self._label_distances_between(target, state, cross)
        xs = self._xs.to(device=target_features.device, dtype=target_features.dtype)
        target_index = torch.unique(target_labels, sorted=True, return_inverse=True)[1]  # (m,)
        source_index = self._source_index.to(target_index.device)
        cost = _augmented_cost(
            xs, source_index, target_features, target_index, labels, self.config.chunk_size
        )
        return cost if self._cost_scale == 1.0 else cost * self._cost_scale

    def __call__(self, target_features: Tensor, target_labels: Tensor) -> Tensor:
        """OTDD (a squared distance, scalar tensor) from the source to (X_t, y_t).

        target_features: (m, d) floating; target_labels: (m,) integer. Differentiable w.r.t.
        target_features through the feature term. Raises ValueError for malformed inputs.
        """
        self._check_target(target_features, target_labels)
        cfg = self.config
        xt, yt = subsample(target_features, target_labels, cfg.max_samples, cfg.seed)
        target = self._side(xt, yt)  # target.points: xt reordered by class, with autograd
        wants_gradient = torch.is_grad_enabled() and target.points.requires_grad
        with torch.no_grad(), scratch_scope():
            if self._outer.debiased:
                size = len(target) * max(len(target), len(self._source))
                reserve("outer cost", size, target.points)  # the (m, m) then the (n, m) cost
                reserve("outer kernel", size, target.points)
                state, value_t, gradient_t = self._target_self_term(target, wants_gradient)
            else:
                state = self._inner.prepare(target, None)
            value, gradient = self._cross_term(target, state, wants_gradient)
            if self._outer.debiased:
                value = value - 0.5 * self._source_self_cost - 0.5 * value_t
                if wants_gradient:
                    gradient = gradient - 0.5 * gradient_t
        value = value.to(device=xt.device, dtype=xt.dtype)
        return with_gradient(target.points, value, gradient) if wants_gradient else value

    def _target_self_term(self, target: Side, wants_gradient: bool):
        """The target's inner state, OT_eps(t, t) (float64) and its gradient (or None)."""
        target_centred = centred(target.points)
        cost = distance_matrix(target_centred, None, self.config.chunk_size, "outer cost")
        own = self._blocks(target, target, cost)
        state = self._inner.prepare(target, own)
        labels = self._label_distances_within(target, state, own, cost)
        del own
        add_label_costs(cost, labels.nan_to_num(0.0), target, target)
        points = (target_centred.points, target_centred.points) if wants_gradient else None
        value, gradient = self._solve(cost, symmetric=True, points=points)
        return state, value, gradient

    def _cross_term(self, target: Side, state: Any, wants_gradient: bool):
        """OT(s, t) of the augmented cost (float64) and its gradient w.r.t. the target points."""
        source, source_centred = self._source_like(target.points)
        chunk = self.config.chunk_size
        cost = distance_matrix(source_centred, target.points, chunk, "outer cost")  # (n, m)
        cross = self._blocks(source, target, cost)
        labels = self._label_distances_between(target, state, cross)
        del cross
        add_label_costs(cost, labels, source, target)
        points = None
        if wants_gradient:
            points = (source_centred.points, target.points.detach() - source_centred.shift)
        return self._solve(cost, points=points)


def otdd(
    source_features: Tensor,
    source_labels: Tensor,
    target_features: Tensor,
    target_labels: Tensor,
    config: OTDDConfig | None = None,
) -> Tensor:
    """One-shot OTDD (squared) between two labelled datasets; see `OTDD`. The source's and
    the target's computations share their scratch buffers (`orca.otdd.scratch`)."""
    with scratch_scope():
        return OTDD(source_features, source_labels, config)(target_features, target_labels)
