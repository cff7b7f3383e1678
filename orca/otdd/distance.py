"""The Optimal Transport Dataset Distance (OTDD; Alvarez-Melis & Fusi, NeurIPS 2020).

Notation
    X_s (n, d), y_s (n,)   source (proxy) features and integer labels; fixed
    X_t (m, d), y_t (m,)   target features (the ones that get a gradient) and labels
    C_s, C_t               source and target classes, sorted; DISJOINT label spaces, so source
                           class 0 and target class 0 are different labels
    W                      label-distance matrix over the union of classes, squared W_2, in
                           blocks W_ss (C_s, C_s), W_st (C_s, C_t), W_tt (C_t, C_t); detached
    M (n, m)               augmented squared cost M_ij = ||x_i - x'_j||^2 + W[y_i, y'_j]
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

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from orca.configbase import Config, check_choice, check_number
from orca.otdd.label_distances import label_distances
from orca.otdd.sinkhorn import sinkhorn_cost, squared_distances

INNER_KINDS = ("exact", "sinkhorn", "gaussian")
OUTER_KINDS = ("exact", "sinkhorn")
_EMD_MAX_ITER = 100_000_000  # network-simplex pivots for the outer exact problem


@dataclass(frozen=True)
class OTDDConfig(Config):
    """How OTDD is computed. Validates itself; `to_dict()`/`from_dict()` round-trip."""

    inner: Literal["exact", "sinkhorn", "gaussian"] = "exact"
    outer: Literal["exact", "sinkhorn"] = "sinkhorn"
    epsilon: float = 0.1  # outer (and "sinkhorn" inner) regularisation, squared-distance units
    max_samples: int | None = 5000  # per-side cap on points in the outer problem
    max_samples_per_class: int = 500  # per-class cap in the inner class-to-class problems
    sinkhorn_max_iter: int = 1000
    sinkhorn_tol: float = 1e-6  # L1 error of the marginals at which Sinkhorn stops
    chunk_size: int = 4096  # source rows per block when building M
    seed: int = 0  # seeds every random subsample

    def __post_init__(self) -> None:
        check_choice("inner", self.inner, INNER_KINDS)
        check_choice("outer", self.outer, OUTER_KINDS)
        check_number("epsilon", self.epsilon, minimum=0, exclusive_minimum=True)
        if self.max_samples is not None:
            check_number("max_samples", self.max_samples, minimum=1, integer=True)
        check_number("max_samples_per_class", self.max_samples_per_class, minimum=1, integer=True)
        check_number("sinkhorn_max_iter", self.sinkhorn_max_iter, minimum=1, integer=True)
        check_number("sinkhorn_tol", self.sinkhorn_tol, minimum=0, exclusive_minimum=True)
        check_number("chunk_size", self.chunk_size, minimum=1, integer=True)
        check_number("seed", self.seed, minimum=0, integer=True)

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


def _subsample(
    features: Tensor, labels: Tensor, cap: int | None, seed: int
) -> tuple[Tensor, Tensor]:
    """At most `cap` rows, a seeded uniform random subset kept in the original order."""
    if cap is None or len(features) <= cap:
        return features, labels
    generator = torch.Generator().manual_seed(seed)
    rows = torch.randperm(len(features), generator=generator)[:cap].sort().values
    rows = rows.to(features.device)  # (cap,)
    return features[rows], labels[rows.to(labels.device)]


def _augmented_cost(
    xa: Tensor, index_a: Tensor, xb: Tensor, index_b: Tensor, label_cost: Tensor, chunk: int
) -> Tensor:
    """M (n, m) = ||xa_i - xb_j||^2 + label_cost[index_a_i, index_b_j], built `chunk` rows at a
    time so that the temporaries stay (chunk, m). Without autograd, each block is written in
    place into one preallocated M."""
    label_cost = label_cost.to(device=xa.device, dtype=xa.dtype)
    label_columns = label_cost[:, index_b]  # (C_a, m)
    if torch.is_grad_enabled() and (xa.requires_grad or xb.requires_grad):
        blocks = []
        for start in range(0, len(xa), chunk):
            rows = slice(start, start + chunk)
            features = squared_distances(xa[rows], xb)  # (chunk, m)
            blocks.append(features + label_columns[index_a[rows]])
        return blocks[0] if len(blocks) == 1 else torch.cat(blocks)  # (n, m)
    cost = xa.new_empty(len(xa), len(xb))  # (n, m)
    for start in range(0, len(xa), chunk):
        rows = slice(start, start + chunk)
        block = squared_distances(xa[rows], xb)  # (chunk, m), non-negative
        cost[rows] = block.add_(label_columns[index_a[rows]])
    return cost


def _exact_ot(cost: Tensor) -> Tensor:
    """min_P <P, M> with uniform weights; the optimal plan is found by POT's network simplex and
    held fixed, so the gradient with respect to M is P (exact where the plan is unique)."""
    import ot  # imported on use: POT pulls in scikit-learn, seconds at startup

    n, m = cost.shape
    plan = ot.emd(
        np.full(n, 1.0 / n),
        np.full(m, 1.0 / m),
        cost.detach().to("cpu", torch.float64).numpy(),
        numItermax=_EMD_MAX_ITER,
    )
    return (torch.from_numpy(plan).to(device=cost.device, dtype=cost.dtype) * cost).sum()


class OTDD:
    """Holds a fixed (source) labelled dataset and computes OTDD to target datasets.

    The source x source label distances W_ss, and with outer="sinkhorn" the source self term
    OT_eps(s, s), are computed ONCE in __init__ and reused on every call (outer="exact" needs
    neither). Each call computes W_st and W_tt, detached. The source keeps a seeded subset of
    at most `config.max_samples` points; each target gets the same treatment per call.
    Works on any device and floating dtype; the source follows the target's at call time.
    """

    def __init__(
        self, source_features: Tensor, source_labels: Tensor, config: OTDDConfig | None = None
    ) -> None:
        self.config = config if config is not None else OTDDConfig()
        _check_labelled("source", source_features, source_labels)
        xs, ys = _subsample(
            source_features.detach(), source_labels, self.config.max_samples, self.config.seed
        )
        self._xs, self._ys = xs, ys
        self._source_index = torch.unique(ys, sorted=True, return_inverse=True)[1]  # (n,)
        self.source_label_distances: Tensor | None = None  # W_ss (C_s, C_s)
        self._source_self_cost: float | None = None  # OT_eps(s, s)
        if self.config.outer == "sinkhorn":
            with torch.no_grad():
                self.source_label_distances = self._label_distances(xs, ys, xs, ys)
                cost = _augmented_cost(
                    xs,
                    self._source_index,
                    xs,
                    self._source_index,
                    self.source_label_distances,
                    self.config.chunk_size,
                )
                self._source_self_cost = float(self._entropic(cost, symmetric=True))

    def _label_distances(self, xa: Tensor, ya: Tensor, xb: Tensor, yb: Tensor) -> Tensor:
        cfg = self.config
        opts: dict[str, Any] = {}
        if cfg.inner == "sinkhorn":
            opts = {"epsilon": cfg.epsilon, "max_iter": cfg.sinkhorn_max_iter}
            opts["tol"] = cfg.sinkhorn_tol
        return label_distances(
            xa,
            ya,
            xb,
            yb,
            cfg.inner,
            max_samples_per_class=cfg.max_samples_per_class,
            seed=cfg.seed,
            **opts,
        ).distances

    def _entropic(self, cost: Tensor, symmetric: bool = False) -> Tensor:
        cfg = self.config
        return sinkhorn_cost(
            cost,
            epsilon=cfg.epsilon,
            max_iter=cfg.sinkhorn_max_iter,
            tol=cfg.sinkhorn_tol,
            symmetric=symmetric,
        )

    def _check_target(self, target_features: Tensor, target_labels: Tensor) -> None:
        _check_labelled("target", target_features, target_labels)
        if target_features.shape[1] != self._xs.shape[1]:
            raise ValueError(
                f"target_features have dim {target_features.shape[1]}, "
                f"source features have dim {self._xs.shape[1]}"
            )

    def augmented_cost(self, target_features: Tensor, target_labels: Tensor) -> Tensor:
        """M (n, m) between the stored source points and ALL given target points (no target
        subsampling here), in squared-distance units; differentiable w.r.t. target_features."""
        self._check_target(target_features, target_labels)
        xs = self._xs.to(device=target_features.device, dtype=target_features.dtype)
        ys = self._ys.to(target_labels.device)
        label_cost = self._label_distances(xs, ys, target_features, target_labels)
        target_index = torch.unique(target_labels, sorted=True, return_inverse=True)[1]  # (m,)
        source_index = self._source_index.to(target_index.device)
        return _augmented_cost(
            xs, source_index, target_features, target_index, label_cost, self.config.chunk_size
        )

    def __call__(self, target_features: Tensor, target_labels: Tensor) -> Tensor:
        """OTDD (a squared distance, scalar tensor) from the source to (X_t, y_t).

        target_features: (m, d) floating; target_labels: (m,) integer. Differentiable w.r.t.
        target_features through the feature term. Raises ValueError for malformed inputs.
        """
        self._check_target(target_features, target_labels)
        xt, yt = _subsample(
            target_features, target_labels, self.config.max_samples, self.config.seed
        )
        cost_st = self.augmented_cost(xt, yt)  # (n, m)
        if self.config.outer == "exact":
            return _exact_ot(cost_st)
        label_tt = self._label_distances(xt, yt, xt, yt)  # (C_t, C_t)
        target_index = torch.unique(yt, sorted=True, return_inverse=True)[1]  # (m,)
        cost_tt = _augmented_cost(
            xt, target_index, xt, target_index, label_tt, self.config.chunk_size
        )  # (m, m)
        cross = self._entropic(cost_st)
        return cross - 0.5 * self._source_self_cost - 0.5 * self._entropic(cost_tt, symmetric=True)


def otdd(
    source_features: Tensor,
    source_labels: Tensor,
    target_features: Tensor,
    target_labels: Tensor,
    config: OTDDConfig | None = None,
) -> Tensor:
    """One-shot OTDD (squared) between two labelled datasets; see `OTDD`."""
    return OTDD(source_features, source_labels, config)(target_features, target_labels)
