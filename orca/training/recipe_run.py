"""Fine-tuning with the default recipe: plan the "auto" fields, warm-start the predictor,
then fine-tune. Shared by the refine stage and the diagnosis scripts in benchmarks/."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from orca import stopping
from orca.atomic import atomic_path
from orca.checkpoint import CheckpointError
from orca.config.stages import RefineConfig
from orca.metrics import Metric
from orca.training.finetune import FineTuneResult, fine_tune
from orca.training.probe_warm_start import ProbeWarmStart, warm_start_predictor
from orca.training.recipe import RefinePlan, measure_throughput, plan_refine

PLAN_FILE = "plan.json"  # next to the epoch checkpoints


def plan_for(
    model: torch.nn.Module,
    train: tuple[torch.Tensor, torch.Tensor],
    n_val: int,
    config: RefineConfig,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> RefinePlan:
    """The recipe's plan for `config`: throughput measured on this model, here, at the
    batch size the plan will use (explicit fields pass through unchanged)."""
    draft = plan_refine(
        n_train=len(train[0]),
        n_val=n_val,
        examples_per_second=1.0,
        budget_s=config.budget_s,
        batch_size=config.batch_size,
    )
    speed = measure_throughput(model, *train, loss_fn, draft.batch_size)
    return plan_refine(
        n_train=len(train[0]),
        n_val=n_val,
        examples_per_second=speed,
        budget_s=config.budget_s,
        epochs=config.epochs,
        batch_size=config.batch_size,
        lr=config.lr,
        patience=config.patience,
        accumulation_steps=config.accumulation_steps,
    )


def train_with_recipe(*args: Any, **kwargs: Any):
    """`_train_with_recipe` with SIGTERM and SIGINT turned into stop requests that the
    training loop honours after its next optimizer step (orca.stopping)."""
    with stopping.handle_stop_signals():
        return _train_with_recipe(*args, **kwargs)


def _train_with_recipe(
    model: torch.nn.Module,
    trainable: set[str],
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
    config: RefineConfig,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    metric: Metric,
    *,
    seed: int,
    on_plan: Callable[[RefinePlan], None] | None = None,
    **fine_tune_options: Any,
) -> tuple[FineTuneResult, RefinePlan | None, ProbeWarmStart | None]:
    """Resolve `config`'s "auto" fields (calling `on_plan` with the plan before training),
    warm-start the predictor when it trains and `config.probe_steps` > 0, then fine-tune
    (`fine_tune_options` go to orca.training.finetune.fine_tune)."""
    plan = None
    if config.needs_plan:
        checkpoint_dir = fine_tune_options.get("checkpoint_dir")
        plan = saved_plan(checkpoint_dir)  # a stopped run resumes on its own plan
        if plan is None:
            plan = plan_for(model, train, len(val[0]), config, loss_fn)
            if checkpoint_dir is not None:
                save_plan(checkpoint_dir, plan)
        config = config.resolved(plan)
        if on_plan is not None:
            on_plan(plan)
    warm_start = None
    if config.probe_steps and any(name.startswith("predictor.") for name in trainable):
        generator = torch.Generator().manual_seed(seed)
        warm_start = warm_start_predictor(
            model, *train, loss_fn, steps=config.probe_steps, val=val, generator=generator
        )
    result = fine_tune(model, train, val, config, loss_fn, metric, seed=seed, **fine_tune_options)
    return result, plan, warm_start


def saved_plan(checkpoint_dir: str | Path | None) -> RefinePlan | None:
    """The plan that a run with these checkpoints trained on, when it wrote one. The plan
    rests on a throughput measurement, so a resumed run must not measure again: a different
    number of epochs would make its checkpoints those of another setup."""
    if checkpoint_dir is None or not (Path(checkpoint_dir) / PLAN_FILE).is_file():
        return None
    path = Path(checkpoint_dir) / PLAN_FILE
    try:
        return RefinePlan(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError) as err:
        raise CheckpointError(f"{path}: unreadable plan ({err})") from err


def save_plan(checkpoint_dir: str | Path, plan: RefinePlan) -> None:
    Path(checkpoint_dir).mkdir(parents=True, exist_ok=True)
    with atomic_path(Path(checkpoint_dir) / PLAN_FILE) as tmp:
        tmp.write_text(json.dumps(plan.to_dict()))
