"""Stage 2's procedures, by name (AlignConfig.procedure): how one epoch of embedder
training visits the target data.

    per_class  the authors': visit the target classes in random order; for class c, embed
               at most `samples_per_class` of its examples, mean-pool over tokens, and
               backpropagate w_c * loss(proxy, target restricted to c), with w_c the class
               frequency. One optimizer step per epoch.
    minibatch  shuffle the targets into batches of `batch_size` and take one optimizer step
               per batch on loss(proxy, batch) with the batch's labels.

A procedure runs one epoch (train=False: measure only, no step) and returns its loss.
The target data may live on any device (the align stage puts it on the run's): the
sampling draws from the CPU generator, so the same seed visits the same examples on the
CPU and on a GPU.
This module imports no config: AlignConfig checks its `procedure` against ALIGN_PROCEDURES.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from orca.registry import Registry


@dataclass
class EpochContext:
    """What an epoch works with: the embedder, the loss to the proxy and the target data."""

    embed: Callable[[torch.Tensor], torch.Tensor]  # (n, *input) -> (n, T, D) tokens
    metric: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (features, labels) -> loss
    x: torch.Tensor  # (N, *input_shape) target inputs
    labels: torch.Tensor  # (N,) class ids or pseudo-labels
    samples_per_class: int  # per_class: cap on a class's examples per epoch
    batch_size: int  # minibatch: targets per step
    generator: torch.Generator
    optimizer: torch.optim.Optimizer


ALIGN_PROCEDURES: Registry[Callable[[EpochContext, bool], float]] = Registry("align procedure")


@ALIGN_PROCEDURES.register("per_class")
def per_class_epoch(ctx: EpochContext, train: bool) -> float:
    classes, counts = torch.unique(ctx.labels, return_counts=True)
    weights = (counts.double() / counts.sum()).tolist()
    cap = ctx.samples_per_class
    total = 0.0
    if train:
        ctx.optimizer.zero_grad(set_to_none=True)
    for c in torch.randperm(len(classes), generator=ctx.generator).tolist():
        index = torch.nonzero(ctx.labels == classes[c]).flatten()
        if len(index) > cap:
            keep = torch.randperm(len(index), generator=ctx.generator)[:cap]
            index = index[keep.to(index.device)]
        features = ctx.embed(ctx.x[index]).mean(dim=1)  # (n_c, T, D) -> (n_c, D)
        loss = weights[c] * ctx.metric(features, ctx.labels[index])
        if train:
            loss.backward()  # gradients accumulate over classes: one step per epoch
        total += float(loss.detach())
    if train:
        ctx.optimizer.step()
    return total


@ALIGN_PROCEDURES.register("minibatch")
def minibatch_epoch(ctx: EpochContext, train: bool) -> float:
    order = torch.randperm(len(ctx.x), generator=ctx.generator)
    total, seen = 0.0, 0
    for start in range(0, len(order), ctx.batch_size):
        index = order[start : start + ctx.batch_size].to(ctx.x.device)
        if len(index) < 2:  # a one-point batch has no distribution to compare
            continue
        features = ctx.embed(ctx.x[index]).mean(dim=1)  # (b, T, D) -> (b, D)
        loss = ctx.metric(features, ctx.labels[index])
        if train:
            ctx.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            ctx.optimizer.step()
        total += float(loss.detach()) * len(index)
        seen += len(index)
    return total / max(seen, 1)
