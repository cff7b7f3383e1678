"""The default fine-tuning recipe: epochs, batch size, lr and patience chosen from the data.

A task file with no hyperparameters must still train well, and within a time budget. The
recipe is a pure function of the data's shape (training examples, tokens per example, the
output kind) and a measured throughput (training examples per second on this machine):

    batch size   a power of two near n / 8, within [4, 32]: small sets get many small
                 steps (40 examples -> batches of 4, 10 steps an epoch), large sets
                 batches of 32
    epochs       enough for about `TARGET_STEPS` optimizer steps, within
                 [MIN_EPOCHS, MAX_EPOCHS], then cut to what `budget_s` affords at the
                 measured throughput (an epoch costs n training examples plus the
                 validation pass, counted as a third of a training example each)
    lr           `BODY_LR` for the pretrained body; the embedder and predictor, which start
                 untrained, get `task_lr_scale` times more (RefineConfig)
    patience     early stopping after max(10, half the epochs) epochs without a better
                 validation metric; the best epoch's weights are restored

Fields a config sets explicitly are kept as they are: only "auto" ones are chosen here.
Why these numbers: benchmarks/diagnose_quality.py sweeps (lr, epochs, batch size,
dropout, warm start) on the demo tasks and synthetic ones; the evidence is in the issue
16 closing note. The recipe is shared by every task, demo tasks included.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

from orca.training.precision import training_autocast

AUTO = "auto"
TARGET_STEPS = 400  # optimizer steps the recipe aims for when the budget allows
MIN_EPOCHS, MAX_EPOCHS = 3, 150
MIN_BATCH, MAX_BATCH = 4, 32
BODY_LR = 5e-5
VALIDATION_COST = 1 / 3  # a forward pass costs about a third of forward + backward


@dataclass(frozen=True)
class RefinePlan:
    """What the recipe chose, and what it expects the training to cost."""

    epochs: int
    batch_size: int
    lr: float
    patience: int | None
    expected_seconds: float
    examples_per_second: float
    budget_s: float
    steps_per_epoch: int
    budget_limited: bool  # the budget, not TARGET_STEPS, set the epochs

    def to_dict(self) -> dict[str, float | int | bool | None]:
        return asdict(self)


def choose_batch_size(n_train: int) -> int:
    """A power of two near n / 8, clipped to [MIN_BATCH, MAX_BATCH] and to n."""
    if n_train < 1:
        raise ValueError(f"n_train={n_train} must be at least 1")
    target = max(n_train / 8, 1)
    power = 2 ** round(math.log2(target))
    return int(min(max(power, MIN_BATCH), MAX_BATCH, n_train))


def choose_patience(epochs: int) -> int:
    """Epochs without a better validation metric before stopping: half the epochs, at
    least 10. Validation sets of 10-60 examples plateau for several epochs and then improve
    (digits: no better epoch for 5 epochs after the first, then 10.2% test error at epoch
    10 against 19.1% when stopped at patience 5), so patience is generous."""
    return max(10, epochs // 2)


def epoch_seconds(n_train: int, n_val: int, examples_per_second: float) -> float:
    """Expected seconds of one epoch: the training pass and the validation pass."""
    return (n_train + VALIDATION_COST * n_val) / examples_per_second


def plan_refine(
    *,
    n_train: int,
    n_val: int,
    examples_per_second: float,
    budget_s: float,
    epochs: int | str = AUTO,
    batch_size: int | str = AUTO,
    lr: float | str = AUTO,
    patience: int | str | None = AUTO,
    accumulation_steps: int = 1,
) -> RefinePlan:
    """The recipe's choices for the "auto" fields; explicit values pass through.

    `examples_per_second` is the measured training throughput (forward + backward) of
    this model on this machine. Explicit epochs are not cut by the budget: the budget
    fits only the epochs the recipe chooses.
    """
    if examples_per_second <= 0:
        raise ValueError(f"examples_per_second={examples_per_second} must be positive")
    batch = choose_batch_size(n_train) if batch_size == AUTO else int(batch_size)
    batches = -(-n_train // batch)  # ceil
    steps_per_epoch = -(-batches // accumulation_steps)
    per_epoch = epoch_seconds(n_train, n_val, examples_per_second)
    budget_limited = False
    if epochs == AUTO:
        wanted = min(max(math.ceil(TARGET_STEPS / steps_per_epoch), MIN_EPOCHS), MAX_EPOCHS)
        affordable = max(1, int(budget_s // per_epoch))
        budget_limited = affordable < wanted
        chosen_epochs = min(wanted, affordable)
    else:
        chosen_epochs = int(epochs)
    if patience == AUTO:
        chosen_patience = choose_patience(chosen_epochs)
    else:
        chosen_patience = None if patience is None else int(patience)
    return RefinePlan(
        epochs=chosen_epochs,
        batch_size=batch,
        lr=BODY_LR if lr == AUTO else float(lr),
        patience=chosen_patience,
        expected_seconds=round(chosen_epochs * per_epoch, 1),
        examples_per_second=round(examples_per_second, 2),
        budget_s=budget_s,
        steps_per_epoch=steps_per_epoch,
        budget_limited=budget_limited,
    )


def measure_throughput(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    batch_size: int,
    *,
    min_seconds: float = 1.0,
    max_batches: int = 8,
) -> float:
    """Training examples per second (forward + backward, no optimizer step) on `x`, under
    the training steps' autocast (bf16 on CUDA), so the plan fits the speed they will run at.

    The model's weights are not changed; its gradients are cleared afterwards and the
    global random state (dropout) is restored, so a run with or without the measurement
    trains alike. One untimed batch first warms up the kernels.
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.train()
    batch_size = min(batch_size, len(x))
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        seen, elapsed = 0, 0.0
        for index in range(max_batches + 1):
            start = (index * batch_size) % max(len(x) - batch_size + 1, 1)
            xb = x[start : start + batch_size].to(device)
            yb = y[start : start + batch_size].to(device)
            began = time.perf_counter()
            with training_autocast(device):
                loss = loss_fn(model(xb).float(), yb)
            loss.backward()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if index > 0:  # the first batch is the warm-up
                elapsed += time.perf_counter() - began
                seen += len(xb)
                if elapsed >= min_seconds:
                    break
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return seen / max(elapsed, 1e-9)
