"""Alignment metrics, by name: losses between the proxy (source) features and embedded
target features, used to train the embedder in stage 2.

Notation
    X_s (n, d), y_s (n,)   source (proxy) features and labels; fixed for the whole stage
    X_t (m, d), y_t (m,)   target features (get the gradient) and labels
    k(x, x')               Gaussian kernel exp(-||x - x'||^2 / (2 h^2)), bandwidths h

Each factory takes the source side once (so any work on it is done once) and returns a
callable loss(X_t, y_t) -> scalar tensor, differentiable with respect to X_t.

    otdd     OTDD to the labelled source (orca.otdd), squared, debiased Sinkhorn outer;
             `cost` names the outer cost's convention (orca.otdd.COST_CONVENTIONS)
    mmd      MMD^2 (biased V-statistic) with a sum of Gaussian kernels; bandwidths are
             the (lower) median distance between distinct source points times
             (1/4, 1/2, 1, 2, 4), fixed at init
    l2       mean over all source-target pairs of ||x_s - x_t||^2
    cosine   mean over all source-target pairs of 1 - cos(x_s, x_t)
Labels are used by otdd only.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from orca.otdd import OTDD, OTDDConfig
from orca.otdd.sinkhorn import squared_distances
from orca.registry import Registry

AlignmentLoss = Callable[[Tensor, Tensor], Tensor]
ALIGNMENT_METRICS: Registry[Callable[..., AlignmentLoss]] = Registry("alignment metric")
MMD_BANDWIDTH_SCALES = (0.25, 0.5, 1.0, 2.0, 4.0)


@ALIGNMENT_METRICS.register("otdd")
def otdd_loss(
    source: Tensor,
    source_labels: Tensor,
    *,
    inner: str = "exact",
    epsilon: float = 0.1,
    cost: str = "squared",
    max_samples: int | None = 5000,
    seed: int = 0,
    **_: object,
) -> AlignmentLoss:
    config = OTDDConfig(
        inner=inner,
        outer="sinkhorn",
        epsilon=epsilon,
        cost=cost,
        max_samples=max_samples,
        seed=seed,
    )
    return OTDD(source, source_labels, config)


def _subsample(source: Tensor, max_samples: int | None, seed: int) -> Tensor:
    if max_samples is None or len(source) <= max_samples:
        return source
    generator = torch.Generator().manual_seed(seed)
    return source[torch.randperm(len(source), generator=generator)[:max_samples]]


def _label_free(build: Callable[[Tensor], AlignmentLoss]) -> Callable[..., AlignmentLoss]:
    """A factory for a metric that ignores labels: subsample the source once, then build."""

    def factory(
        source: Tensor,
        source_labels: Tensor,
        *,
        max_samples: int | None = 5000,
        seed: int = 0,
        **_: object,
    ) -> AlignmentLoss:
        return build(_subsample(source, max_samples, seed).detach())

    return factory


def _mmd(xs: Tensor) -> AlignmentLoss:
    dss = squared_distances(xs, xs)  # (n, n)
    rows, cols = torch.triu_indices(len(xs), len(xs), offset=1)
    pairs = dss[rows, cols]  # distinct pairs only: the diagonal is ~0, not exactly 0
    median = pairs.median().sqrt() if len(pairs) and pairs.max() > 0 else torch.tensor(1.0)
    bandwidths = [float(median) * s for s in MMD_BANDWIDTH_SCALES]

    def kernel_mean(sq: Tensor) -> Tensor:
        return sum(torch.exp(-sq / (2 * h * h)) for h in bandwidths).mean()

    source_term = kernel_mean(dss)

    def loss(target: Tensor, target_labels: Tensor) -> Tensor:
        return (
            source_term.to(target.dtype)
            + kernel_mean(squared_distances(target, target))
            - 2 * kernel_mean(squared_distances(xs.to(target.dtype), target))
        )

    return loss


def _l2(xs: Tensor) -> AlignmentLoss:
    return lambda target, target_labels: squared_distances(xs.to(target.dtype), target).mean()


def _cosine(xs: Tensor) -> AlignmentLoss:
    unit = torch.nn.functional.normalize(xs, dim=1)

    def loss(target: Tensor, target_labels: Tensor) -> Tensor:
        xt = torch.nn.functional.normalize(target, dim=1)
        return 1.0 - (unit.to(target.dtype) @ xt.T).mean()  # (n, m) similarities

    return loss


ALIGNMENT_METRICS.register("mmd", _label_free(_mmd))
ALIGNMENT_METRICS.register("l2", _label_free(_l2))
ALIGNMENT_METRICS.register("cosine", _label_free(_cosine))


def create_alignment_metric(
    name: str, source: Tensor, source_labels: Tensor, **options: object
) -> AlignmentLoss:
    return ALIGNMENT_METRICS.get(name)(source, source_labels, **options)
