"""Optimizers (OPTIMIZERS) and learning-rate schedules (SCHEDULES), by name: the configs'
optimizer and schedule fields are checked against these registries.

An OPTIMIZERS entry takes (params, lr, weight_decay, momentum, betas) and uses what its
kind has: SGD the momentum, Adam and AdamW the betas (the authors' configs use
(0.9, 0.98); torch's default, orca's, is (0.9, 0.999)).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch

from orca.registry import Registry

OPTIMIZERS: Registry[Callable[..., torch.optim.Optimizer]] = Registry("optimizer")
DEFAULT_BETAS = (0.9, 0.999)  # torch's Adam/AdamW default

OPTIMIZERS.register(
    "sgd",
    lambda params, lr, weight_decay, momentum, betas: torch.optim.SGD(
        params, lr=lr, weight_decay=weight_decay, momentum=momentum
    ),
)


def _fusable(params: list) -> bool:
    """Adam's fused kernel (one pass over all tensors) runs on CPU and CUDA floats; on CPU it
    is several times faster than the per-tensor loop for a transformer body. `params` holds
    parameters or param-group dicts."""
    params = [p for item in params for p in (item["params"] if isinstance(item, dict) else [item])]
    return bool(params) and all(
        p.dtype in (torch.float32, torch.float16, torch.bfloat16, torch.float64)
        and p.device.type in ("cpu", "cuda")
        for p in params
    )


OPTIMIZERS.register(
    "adam",
    lambda params, lr, weight_decay, momentum, betas: torch.optim.Adam(
        params, lr=lr, betas=tuple(betas), weight_decay=weight_decay, fused=_fusable(params)
    ),
)
OPTIMIZERS.register(
    "adamw",
    lambda params, lr, weight_decay, momentum, betas: torch.optim.AdamW(
        params, lr=lr, betas=tuple(betas), weight_decay=weight_decay, fused=_fusable(params)
    ),
)


def create_optimizer(
    name: str,
    params: Iterable[torch.nn.Parameter] | Iterable[dict],
    *,
    lr: float,
    weight_decay: float = 0.0,
    momentum: float = 0.9,
    betas: tuple[float, float] = DEFAULT_BETAS,
) -> torch.optim.Optimizer:
    """`params`: parameters, or torch param-group dicts (a group's own "lr" wins)."""
    return OPTIMIZERS.get(name)(list(params), lr, weight_decay, momentum, betas)


# Parameter-name prefixes of an OrcaModel's task-specific parts: they start untrained (or
# from stage 2 only), so fine-tuning gives them RefineConfig.task_lr_scale times the lr.
TASK_LAYER_PREFIXES = ("embedder.", "predictor.")


def parameter_groups(
    named: Iterable[tuple[str, torch.nn.Parameter]], lr: float, task_lr_scale: float
) -> list[dict]:
    """Two param groups: the body at `lr`, the embedder and predictor at lr x scale.
    An empty group is left out (e.g. FPT-style modes with the whole body frozen)."""
    body, task = [], []
    for name, parameter in named:
        (task if name.startswith(TASK_LAYER_PREFIXES) else body).append(parameter)
    groups = [
        {"params": body, "lr": lr},
        {"params": task, "lr": lr * task_lr_scale},
    ]
    return [group for group in groups if group["params"]]


# Decay of the LR multiplier after warm-up, by name (RefineConfig.schedule): progress in
# [0, 1] through the steps after warm-up -> multiplier.
SCHEDULES: Registry[Callable[[float], float]] = Registry("schedule")
SCHEDULES.register("linear", lambda progress: 1.0 - progress)
SCHEDULES.register("cosine", lambda progress: 0.5 * (1.0 + math.cos(math.pi * progress)))
SCHEDULES.register("constant", lambda progress: 1.0)


def warmup_then_decay(
    total_steps: int, warmup_steps: int, decay: str, decay_steps: int | None = None
) -> Callable[[int], float]:
    """LR multiplier per optimizer step: linear warm-up, then the SCHEDULES entry `decay`
    (linear or cosine decay to 0, or constant). Step counts are optimizer steps, not epochs.

    The decay runs from the end of warm-up to step `decay_steps` (None: `total_steps`, so
    it ends at 0 with training). The authors' WarmupLR decays over its own horizon
    (RefineConfig.decay_epochs), often longer than training, so their lr never reaches 0;
    after a horizon shorter than training the multiplier stays at the schedule's end value.
    An unknown `decay` raises UnknownNameError (a ValueError) listing the schedules."""
    decay_factor = SCHEDULES.get(decay)
    total_steps = max(total_steps, 1)
    warmup_steps = min(max(warmup_steps, 0), total_steps)
    horizon = total_steps if decay_steps is None else max(decay_steps, warmup_steps + 1)

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(horizon - warmup_steps, 1)
        return decay_factor(min(max(progress, 0.0), 1.0))

    return factor


# How the losses of the micro-batches of one optimizer step combine (RefineConfig's
# accumulated_loss): the divisor of each micro-batch's loss, given accumulation_steps.
#     mean  divide by the steps: the gradient of the mean loss (orca)
#     sum   do not divide: the gradient of the summed losses (the authors' train_one_epoch),
#           accumulation_steps times larger; it matters to SGD (Adam is scale-invariant)
ACCUMULATED_LOSS: Registry[Callable[[int], int]] = Registry("accumulated-loss mode")
ACCUMULATED_LOSS.register("mean", lambda steps: steps)
ACCUMULATED_LOSS.register("sum", lambda steps: 1)


def accumulation_divisor(mode: str, accumulation_steps: int) -> int:
    """What each micro-batch's loss is divided by before backward (ACCUMULATED_LOSS)."""
    return ACCUMULATED_LOSS.get(mode)(accumulation_steps)
