"""Stage 2: train the embedder alone so the embedded target data moves toward the proxy.

An epoch runs the procedure AlignConfig.procedure names in
orca.training.align_procedures.ALIGN_PROCEDURES ("per_class", the authors', or "minibatch").
StepLR (x lr_gamma at lr_milestones) steps once per epoch in both. Only the embedder runs;
the body never does. distances[k] is the epoch-k loss; the last entry is measured after
training, with no step. Training stops early once an epoch's loss is <= target_distance.
The embedder first gets AlignConfig.embedder_init's initialisation
(orca.model.embedder_init), which may depend on whether it is trained (epochs > 0).
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
from orca.model.embedder_init import initialise_embedder
from orca.training.align_procedures import ALIGN_PROCEDURES, EpochContext
from orca.training.align_state import AlignCheckpoint
from orca.training.optim import create_optimizer


@dataclass(frozen=True)
class AlignHistory:
    distances: list[float]  # distances[k]: loss in epoch k; the last: after training
    stopped_early: bool = False  # reached target_distance before the epoch limit


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
        cost=config.otdd_cost,
        max_samples=config.max_source_samples,
        seed=seed,
    )


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
    initialise_embedder(model, config.embedder_init, trained=config.epochs > 0, seed=seed)
    params = list(model.embedder.parameters())
    optimizer = create_optimizer(
        config.optimizer,
        params,
        lr=config.lr,
        weight_decay=config.weight_decay,
        momentum=config.momentum,
        betas=config.betas,
    )
    scheduler = torch.optim.lr_scheduler.MultiStepLR(
        optimizer, milestones=list(config.lr_milestones), gamma=config.lr_gamma
    )
    ctx = EpochContext(
        embed=model.embed,
        metric=alignment_metric(config, source_features, source_labels, seed),
        x=x,
        labels=labels,
        samples_per_class=config.samples_per_class,
        batch_size=config.batch_size,
        generator=torch.Generator().manual_seed(seed),
        optimizer=optimizer,
    )
    run_epoch = ALIGN_PROCEDURES.get(config.procedure)
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
