"""Stage 2: train the embedder alone so the embedded target data moves toward the proxy.

Two procedures (AlignConfig.procedure):
    per_class  the authors': per epoch, visit the target classes in random order; for
               class c, embed at most `samples_per_class` of its examples, mean-pool over
               tokens, and backpropagate w_c * loss(proxy, target restricted to c), with
               w_c the class frequency. One optimizer step per epoch.
    minibatch  per epoch, shuffle the targets into batches of `batch_size` and take one
               optimizer step per batch on loss(proxy, batch) with the batch's labels.
StepLR (x lr_gamma at lr_milestones) steps once per epoch in both. Only the embedder runs;
the body never does. distances[k] is the epoch-k loss; the last entry is measured after
training, with no step. Training stops early once an epoch's loss is <= target_distance.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from orca import stopping
from orca.alignment.metrics import create_alignment_metric
from orca.config.stages import AlignConfig
from orca.registry import Registry
from orca.training.align_state import AlignCheckpoint
from orca.training.optim import create_optimizer


@dataclass(frozen=True)
class AlignHistory:
    distances: list[float]  # distances[k]: loss in epoch k; the last: after training
    stopped_early: bool = False  # reached target_distance before the epoch limit


@dataclass
class _EpochContext:
    embed: Callable[[torch.Tensor], torch.Tensor]
    metric: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    x: torch.Tensor
    labels: torch.Tensor
    config: AlignConfig
    generator: torch.Generator
    optimizer: torch.optim.Optimizer


# procedure name -> run one epoch (train=False: measure only); returns the epoch's loss
PROCEDURES: Registry[Callable[[_EpochContext, bool], float]] = Registry("align procedure")


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


@PROCEDURES.register("per_class")
def _per_class_epoch(ctx: _EpochContext, train: bool) -> float:
    classes, counts = torch.unique(ctx.labels, return_counts=True)
    weights = (counts.double() / counts.sum()).tolist()
    cap = ctx.config.samples_per_class
    total = 0.0
    if train:
        ctx.optimizer.zero_grad(set_to_none=True)
    for c in torch.randperm(len(classes), generator=ctx.generator).tolist():
        index = torch.nonzero(ctx.labels == classes[c]).flatten()
        if len(index) > cap:
            index = index[torch.randperm(len(index), generator=ctx.generator)[:cap]]
        features = ctx.embed(ctx.x[index]).mean(dim=1)  # (n_c, T, D) -> (n_c, D)
        loss = weights[c] * ctx.metric(features, ctx.labels[index])
        if train:
            loss.backward()  # gradients accumulate over classes: one step per epoch
        total += float(loss.detach())
    if train:
        ctx.optimizer.step()
    return total


@PROCEDURES.register("minibatch")
def _minibatch_epoch(ctx: _EpochContext, train: bool) -> float:
    order = torch.randperm(len(ctx.x), generator=ctx.generator)
    total, seen = 0.0, 0
    for start in range(0, len(order), ctx.config.batch_size):
        index = order[start : start + ctx.config.batch_size]
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
    checkpoint_dir: str | Path | None = None,
) -> AlignHistory:
    """Train `model.embedder` in place; return the alignment loss per epoch and after.

    x: (N, *input_shape) target inputs; labels: (N,) class ids or k-means pseudo-labels.
    A stop request (orca.stopping: SIGTERM or SIGINT) is honoured at the end of the epoch
    in progress: with `checkpoint_dir` the state is saved there (orca.training.align_state)
    and a later call with the same setup continues from it; StopRequested is raised.
    """
    params = list(model.embedder.parameters())
    optimizer = create_optimizer(
        config.optimizer, params, lr=config.lr, weight_decay=config.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.MultiStepLR(
        optimizer, milestones=list(config.lr_milestones), gamma=config.lr_gamma
    )
    ctx = _EpochContext(
        embed=model.embed,
        metric=alignment_metric(config, source_features, source_labels, seed),
        x=x,
        labels=labels,
        config=config,
        generator=torch.Generator().manual_seed(seed),
        optimizer=optimizer,
    )
    run_epoch = PROCEDURES.get(config.procedure)
    model.embedder.train()
    distances: list[float] = []
    checkpoint = None
    if checkpoint_dir is not None:
        setup = {"config": config.to_dict(), "seed": seed, "sizes": [len(x), len(source_labels)]}
        setup["parameters"] = [[n, list(p.shape)] for n, p in model.embedder.named_parameters()]
        checkpoint = AlignCheckpoint(checkpoint_dir, setup)
        distances = checkpoint.restore(model.embedder, optimizer, scheduler, ctx.generator) or []
    stopped_early = False
    target = config.target_distance
    with stopping.handle_stop_signals():
        for epoch in range(len(distances), config.epochs):
            if target is not None and distances and distances[-1] <= target:
                stopped_early = True
                break
            # Rounded as reported, so a target read off an earlier history stops there.
            distances.append(float(np.round(run_epoch(ctx, True), 8)))
            if on_epoch is not None:
                on_epoch(epoch, distances[-1])
            scheduler.step()
            if stopping.stop_requested():
                state = (model.embedder, optimizer, scheduler, ctx.generator, distances)
                saved = None if checkpoint is None else str(checkpoint.save(*state))
                stopping.check(f"in align after epoch {epoch + 1}", saved)
    with torch.no_grad():
        final = float(np.round(run_epoch(ctx, False), 8))
    distances.append(final)
    if on_epoch is not None:
        on_epoch(len(distances) - 1, final)
    return AlignHistory(distances, stopped_early)
