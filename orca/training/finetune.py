"""Stage 3: fine-tune the whole model on the task loss, selecting on a validation split.

Linear warm-up then decay, stepped per optimizer step; gradient accumulation; gradient
clipping; bf16 autocast for the training steps on CUDA, fp32 for every prediction (the
validation that selects the epoch, and `predict`/`evaluate`; orca.training.precision);
optional per-epoch checkpoints and resume; data-parallel training across processes
(orca.training.replicas). The test split is never seen here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from orca import stopping
from orca.config.stages import RefineConfig
from orca.metrics import Metric
from orca.metrics_context import select_context
from orca.training.mixup import mixed_loss, mixup_alpha
from orca.training.optim import (
    accumulation_divisor,
    create_optimizer,
    parameter_groups,
    warmup_then_decay,
)
from orca.training.precision import full_precision, training_autocast
from orca.training.recipe import AUTO, choose_patience
from orca.training.replicas import SINGLE, Replicas
from orca.training.trainer_state import EpochCheckpoints, LoopState, run_fingerprint


@dataclass(frozen=True)
class EpochRecord:
    epoch: int
    train_loss: float
    val_loss: float
    val_metric: float
    lr: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass
class FineTuneResult:
    best_state: dict[str, torch.Tensor]
    best_epoch: int
    best_val_metric: float
    history: list[EpochRecord]
    stopped_early: bool
    resumed_from_epoch: int | None = None  # the last epoch restored from a checkpoint


@torch.no_grad()
def predict(model: torch.nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Model outputs for `x` in eval mode, batched, in fp32 on the model's device (no
    autocast, no TF32: orca.training.precision.full_precision); returned on CPU."""
    model.eval()
    device = next(model.parameters()).device
    outputs = []
    with full_precision(device):
        for start in range(0, len(x), batch_size):
            batch = x[start : start + batch_size].to(device)
            outputs.append(model(batch).float().cpu())
    return torch.cat(outputs)


def _snapshot(
    state: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor] | None
) -> dict[str, torch.Tensor]:
    """A CPU copy of `state`, written into `buffers` (an earlier snapshot) where the tensors
    fit: overwriting the previous best is then a memcpy, not a model's worth of new pages."""
    buffers = buffers or {}
    copy = {}
    for key, value in state.items():
        value = value.detach()
        old = buffers.get(key)
        if old is not None and old.shape == value.shape and old.dtype == value.dtype:
            copy[key] = old.copy_(value)
        else:
            copy[key] = value.to("cpu", copy=True)
    return copy


def _stop(checkpoints, loop: LoopState, trainer: tuple, position: dict[str, Any]) -> None:
    """Save a mid-epoch checkpoint at `position` (when checkpointing) and raise
    StopRequested (orca.stopping), which names it."""
    where = f"in refine epoch {position['epoch'] + 1}, after batch {position['batches']}"
    saved = None if checkpoints is None else checkpoints.save(loop, *trainer, partial=position)
    stopping.check(where, str(saved) if saved is not None else None)


def fine_tune(
    model: torch.nn.Module,
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
    config: RefineConfig,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    metric: Metric,
    *,
    seed: int = 0,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    checkpoint_dir: str | Path | None = None,
    replicas: Replicas = SINGLE,
    val_context: Mapping[str, np.ndarray] | None = None,
) -> FineTuneResult:
    """Train for `config.epochs` epochs (fewer with patience); keep the best validation state.

    With `checkpoint_dir`, the loop's whole state is saved there at the end of an epoch
    (orca.training.trainer_state) once `config.checkpoint_interval_s` seconds have passed
    since the loop started or last saved (0: every epoch), after best-epoch selection and
    before `on_epoch` sees that epoch, so whatever `on_epoch` does (or however it dies) that
    epoch is already durable. A
    later call with the same setup resumes after the newest checkpoint and, on CPU, ends bit
    for bit where an uninterrupted run would have; `on_epoch` is called only for the epochs
    this call runs. A checkpoint from a different setup raises CheckpointError.

    A stop request (orca.stopping: SIGTERM or SIGINT) is honoured after the next optimizer
    step: the state is saved mid-epoch (with `checkpoint_dir`) and StopRequested raised; a
    later call resumes with the same batches (single process only; torchrun ranks stop at
    torchrun's own signal handling).

    With `replicas` of several processes, this process trains on its share of each epoch
    through DistributedDataParallel; the main rank alone validates (the others take its
    record, so every rank selects and stops alike), saves checkpoints and calls `on_epoch`.

    `val_context` is the validation split's per-example context (field -> one row per
    example, orca.metrics_context), for a metric that needs it (Metric.context); such a
    metric without it raises ValueError before training starts.
    """
    if config.needs_plan:
        raise ValueError(
            "fine_tune needs concrete epochs, batch_size and lr; resolve the 'auto' "
            "fields first (orca.training.recipe.plan_refine, RefineConfig.resolved)"
        )
    if config.patience == AUTO:
        config = config.replace(patience=choose_patience(config.epochs))
    x_train, y_train = train
    x_val, y_val = val
    if metric.context:  # fail now, not after the first epoch's training
        select_context(metric.name, metric.context, val_context or {}, len(y_val))
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    trainable = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    params = [p for _, p in trainable]
    optimizer = create_optimizer(
        config.optimizer,
        parameter_groups(trainable, config.lr, config.task_lr_scale),
        lr=config.lr,
        weight_decay=config.weight_decay,
        momentum=config.momentum,
        betas=config.betas,
    )
    batch_size = replicas.batch_size(config.batch_size)
    batches_per_epoch = -(-replicas.shard_size(len(x_train)) // batch_size)
    steps_per_epoch = -(-batches_per_epoch // config.accumulation_steps)
    total_steps = steps_per_epoch * config.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        warmup_then_decay(
            total_steps,
            round(config.warmup_fraction * total_steps),
            config.schedule,
            None if config.decay_epochs is None else steps_per_epoch * config.decay_epochs,
        ),
    )
    sign = 1.0 if metric.lower_is_better else -1.0
    loop = LoopState()
    checkpoints = None
    if checkpoint_dir is not None:
        # How often to save does not change the training: a checkpoint written with another
        # interval is continued as well.
        setup = {k: v for k, v in config.to_dict().items() if k != "checkpoint_interval_s"}
        fingerprint = run_fingerprint(
            setup,
            seed=seed,
            parameters=trainable,
            sizes={"train": len(x_train), "validation": len(x_val)},
        )
        checkpoints = EpochCheckpoints(checkpoint_dir, fingerprint)
        loop = checkpoints.restore(model, optimizer, scheduler, generator, EpochRecord) or loop
    resumed_from = len(loop.history) - 1 if loop.history else None
    accumulation = config.accumulation_steps
    divisor = accumulation_divisor(config.accumulated_loss, accumulation)  # mean or sum
    alpha = mixup_alpha(config.mixup, y_train) if x_train.is_floating_point() else 0.0
    forward = replicas.wrap(model)  # the model itself, or DistributedDataParallel over it
    best_buffers: dict[str, torch.Tensor] | None = None  # CPU tensors this call owns
    last_saved = time.monotonic()
    with stopping.handle_stop_signals():  # SIGTERM, SIGINT: stop after a step
        for epoch in range(config.epochs if loop.stopped else len(loop.history), config.epochs):
            model.train()
            # The loss sum stays on the device, one in-place op per step: a float() per step
            # would make the CPU wait for the GPU after every batch.
            running, seen = torch.zeros((), dtype=torch.float64, device=device), 0
            partial, loop.partial = loop.partial, None
            if partial is not None:  # resuming inside this epoch: its batches, its loss sum
                order, done = partial["order"], partial["batches"]
                running.fill_(partial["running"])
                seen = partial["seen"]
            else:
                order, done = replicas.shard(torch.randperm(len(x_train), generator=generator)), 0
            optimizer.zero_grad(set_to_none=True)
            for batch_index, start in enumerate(range(0, len(order), batch_size)):
                if batch_index < done:
                    continue
                index = order[start : start + batch_size]
                xb, yb = x_train[index].to(device), y_train[index].to(device)
                with training_autocast(device):
                    loss = mixed_loss(loss_fn, forward, xb, yb, alpha, generator)
                # A divisor of 1 (no accumulation, or summed losses): one autograd node less.
                (loss if divisor == 1 else loss / divisor).backward()
                running.add_(loss.detach(), alpha=len(index))  # float64 sum, as exact as before
                seen += len(index)
                last_batch = start + batch_size >= len(order)
                if (batch_index + 1) % accumulation == 0 or last_batch:
                    if config.clip_norm is not None:
                        torch.nn.utils.clip_grad_norm_(params, config.clip_norm)
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                    if stopping.stop_requested() and replicas.world_size == 1:
                        position = {"epoch": epoch, "batches": batch_index + 1, "order": order}
                        position.update(running=float(running), seen=seen)
                        _stop(checkpoints, loop, (model, optimizer, scheduler, generator), position)
            if replicas.world_size > 1:
                totals = torch.stack([running, running.new_tensor(seen)])
                running, seen = (float(value) for value in replicas.sum(totals))
            record = None
            if replicas.is_main:
                val_out = predict(model, x_val, config.eval_batch_size)
                record = EpochRecord(
                    epoch=epoch,
                    train_loss=float(running) / max(seen, 1),
                    val_loss=float(loss_fn(val_out, y_val)),
                    val_metric=metric.score(val_out.numpy(), y_val.numpy(), val_context),
                    lr=float(scheduler.get_last_lr()[0]),
                )
            record = replicas.from_main(record)
            loop.history.append(record)
            score = sign * record.val_metric
            # Ties go to the lower validation loss, so selection is not stuck on a plateau.
            if score < loop.best_score or (
                score == loop.best_score
                and record.val_loss < loop.history[loop.best_epoch].val_loss
            ):
                loop.best_score, loop.best_epoch = score, epoch
                loop.best_state = best_buffers = _snapshot(model.state_dict(), best_buffers)
                loop.stale_epochs = 0
            else:
                loop.stale_epochs += 1
            loop.stopped = config.patience is not None and loop.stale_epochs >= config.patience
            if (
                checkpoints is not None
                and replicas.is_main
                and time.monotonic() - last_saved >= config.checkpoint_interval_s
            ):
                checkpoints.save(loop, model, optimizer, scheduler, generator)
                last_saved = time.monotonic()
            if on_epoch is not None and replicas.is_main:
                on_epoch(record)
            if loop.stopped:
                break
    return FineTuneResult(
        best_state=loop.best_state,
        best_epoch=loop.best_epoch,
        best_val_metric=sign * loop.best_score,
        history=loop.history,
        stopped_early=len(loop.history) < config.epochs,
        resumed_from_epoch=resumed_from,
    )


def evaluate(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    metric: Metric,
    batch_size: int = 64,
    context: Mapping[str, np.ndarray] | None = None,
) -> float:
    """`metric` of the model's fp32 predictions for `x` against `y`; `context`: the split's
    per-example context, for a metric that needs it (orca.metrics_context)."""
    if metric.context:  # before the forward passes
        select_context(metric.name, metric.context, context or {}, len(y))
    outputs = predict(model, x, batch_size)
    return metric.score(outputs.numpy(), np.asarray(y), context)
