"""Stage 2: train the embedder alone so the embedded target data moves toward the proxy.

The authors' loss, per epoch: visit the target classes in random order; for class c, embed
at most `samples_per_class` of its examples, mean-pool over tokens, and backpropagate
w_c * OTDD(proxy, target restricted to c), w_c = class frequency. One optimizer step per
epoch, StepLR at the configured milestones. Only the embedder runs; the body never does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from orca.alignment.metrics import create_alignment_metric
from orca.config import AlignConfig
from orca.training.optim import create_optimizer


@dataclass(frozen=True)
class AlignHistory:
    distances: list[float]  # distances[k]: alignment loss after k optimizer steps


def alignment_metric(
    config: AlignConfig, source_features: torch.Tensor, source_labels: torch.Tensor, seed: int
):
    """The loss to the proxy; any work on the source side (e.g. OTDD's source x source
    label distances) is done here, once for the whole stage."""
    return create_alignment_metric(
        config.metric,
        source_features,
        source_labels,
        inner=config.otdd_inner,
        epsilon=config.otdd_epsilon,
        max_samples=config.max_source_samples,
        seed=seed,
    )


def _class_loss(embed, metric, x, labels, classes, weights, cap, generator, backward):
    total = 0.0
    for c in torch.randperm(len(classes), generator=generator).tolist():
        index = torch.nonzero(labels == classes[c]).flatten()
        if len(index) > cap:
            index = index[torch.randperm(len(index), generator=generator)[:cap]]
        features = embed(x[index]).mean(dim=1)  # (n_c, T, D) -> (n_c, D)
        loss = weights[c] * metric(features, labels[index])
        if backward:
            loss.backward()
        total += float(loss.detach())
    return total


def train_embedder(
    model,
    x: torch.Tensor,
    labels: torch.Tensor,
    source_features: torch.Tensor,
    source_labels: torch.Tensor,
    config: AlignConfig,
    *,
    seed: int = 0,
    on_epoch: Callable[[int, float], None] | None = None,
) -> AlignHistory:
    """Train `model.embedder` in place; return the alignment loss before and after each step.

    x: (N, *input_shape) target inputs; labels: (N,) class ids or k-means pseudo-labels.
    """
    generator = torch.Generator().manual_seed(seed)
    metric = alignment_metric(config, source_features, source_labels, seed)
    classes, counts = torch.unique(labels, return_counts=True)
    weights = (counts.double() / counts.sum()).tolist()
    params = list(model.embedder.parameters())
    optimizer = create_optimizer(
        config.optimizer, params, lr=config.lr, weight_decay=config.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.MultiStepLR(
        optimizer, milestones=list(config.lr_milestones), gamma=config.lr_gamma
    )
    model.embedder.train()
    distances: list[float] = []
    for epoch in range(config.epochs):
        optimizer.zero_grad(set_to_none=True)
        distance = _class_loss(
            model.embed,
            metric,
            x,
            labels,
            classes,
            weights,
            config.samples_per_class,
            generator,
            backward=True,
        )
        distances.append(distance)
        if on_epoch is not None:
            on_epoch(epoch, distance)
        optimizer.step()
        scheduler.step()
    with torch.no_grad():
        final = _class_loss(
            model.embed,
            metric,
            x,
            labels,
            classes,
            weights,
            config.samples_per_class,
            generator,
            backward=False,
        )
    distances.append(final)
    if on_epoch is not None:
        on_epoch(config.epochs, final)
    return AlignHistory(distances=[float(np.round(d, 8)) for d in distances])
