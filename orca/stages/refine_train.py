"""Stage 3's training in one process: build the model as fine-tuning starts, fine-tune it
and write the best state. `orca.stages.refine` runs it in the stage's own process and
`orca.stages.refine_distributed` in each torchrun rank; neither imports the other.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from orca.checkpoint import load_into, save_state
from orca.config.stages import RefineConfig
from orca.data.arrow_io import read_split
from orca.data.tasks import get_task
from orca.devices import device_of, torch_device
from orca.fingerprint import fingerprint_arrays
from orca.metrics import LOSSES, METRICS
from orca.model import OrcaModel, create_model
from orca.model.orca_model import set_body_dropout
from orca.training.finetune import EpochRecord
from orca.training.recipe import RefinePlan, plan_refine
from orca.training.recipe_run import plan_for, train_with_recipe
from orca.training.refine_modes import apply_refine_mode
from orca.training.replicas import SINGLE, Replicas


def read_tensors(path: str) -> tuple[torch.Tensor, torch.Tensor]:
    """An ingested split file's inputs and targets as tensors."""
    split = read_split(path)
    return torch.from_numpy(split.x), torch.from_numpy(split.y)


def prepare_model(
    task_name: str,
    backbone: str,
    train: tuple[torch.Tensor, torch.Tensor],
    embedder: dict[str, Any],
    config: RefineConfig,
    seed: int,
    mode: str,
    pretrained: bool,
    device: torch.device,
) -> tuple[OrcaModel, set[str]]:
    """The model as fine-tuning starts: the stage-2 embedder loaded, the body's dropout
    set, the parameters `mode` trains marked, on `device`."""
    torch.manual_seed(seed)
    model = create_model(get_task(task_name), backbone, seed=seed, pretrained=pretrained)
    model.fit_scalers(*train)  # the same statistics stage 2 fitted on the same rows
    load_into(model.embedder, embedder["path"])
    if config.dropout is not None:
        set_body_dropout(model, config.dropout)
    trainable = set(apply_refine_mode(model, mode))
    model.to(device)
    return model, trainable


def fine_tune_and_save(
    task_name: str,
    backbone: str,
    dataset: dict[str, Any],
    embedder: dict[str, Any],
    config: RefineConfig,
    seed: int,
    *,
    model_path: Path,
    checkpoint_dir: Path,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    mode: str = "full",
    pretrained: bool = True,
    replicas: Replicas = SINGLE,
    device: torch.device | str = "auto",
    on_plan: Callable[[RefinePlan], None] | None = None,
) -> dict[str, Any]:
    """Build the model on `device` (a torch.device, or a name in orca.devices.DEVICES),
    fine-tune the parameters `mode` selects (this process's share, with `replicas`), and on
    the main process write the best state to `model_path`. Returns the run's summary, with
    `device`: where the model was trained; with several processes, `replica_weights` holds
    a fingerprint of each rank's final weights (DistributedDataParallel keeps them equal)."""
    if isinstance(device, str):
        device = torch_device(device)
    spec = get_task(task_name)
    train = read_tensors(dataset["splits"]["train"]["path"])
    model, trainable = prepare_model(
        task_name, backbone, train, embedder, config, seed, mode, pretrained, device
    )
    validation = read_split(dataset["splits"]["validation"]["path"])
    val = (torch.from_numpy(validation.x), torch.from_numpy(validation.y))
    loss_fn = LOSSES.get(spec.loss)
    # On several processes, refine() has resolved the plan before starting them.
    result, plan, warm_start = train_with_recipe(
        model,
        trainable,
        train,
        val,
        config,
        loss_fn,
        METRICS.get(spec.metric),
        seed=seed,
        on_plan=on_plan if replicas.is_main else None,
        on_epoch=on_epoch,
        checkpoint_dir=checkpoint_dir,
        replicas=replicas,
        val_context=validation.context,  # for a metric that needs it (orca.metrics_context)
    )
    ran_on = device_of(model)
    if replicas.is_main:
        metadata = {"task": task_name, "backbone": backbone, "best_epoch": str(result.best_epoch)}
        save_state(model_path, result.best_state, {**metadata, "device": ran_on})
    summary = {
        "plan": plan.to_dict() if plan is not None else None,
        "probe_warm_start": warm_start.to_dict() if warm_start is not None else None,
        "best_epoch": result.best_epoch,
        "best_val_metric": result.best_val_metric,
        "stopped_early": result.stopped_early,
        "resumed_from_epoch": result.resumed_from_epoch,
        "trainable_parameters": sum(
            p.numel() for name, p in model.named_parameters() if name in trainable
        ),
        "history": [record.to_dict() for record in result.history],
        "device": ran_on,
    }
    if replicas.world_size > 1:
        summary["replica_weights"] = replicas.gather(weights_fingerprint(model))
    return summary


def plan_for_processes(
    task_name: str,
    backbone: str,
    dataset: dict[str, Any],
    embedder: dict[str, Any],
    config: RefineConfig,
    seed: int,
    device: str = "auto",
) -> RefinePlan:
    """The plan for a data-parallel run: one process's measured throughput on `device`,
    times the number of processes."""
    train = read_tensors(dataset["splits"]["train"]["path"])
    model, _ = prepare_model(
        task_name, backbone, train, embedder, config, seed, "full", True, torch_device(device)
    )
    n_val = dataset["splits"]["validation"]["rows"]
    single = plan_for(model, train, n_val, config, LOSSES.get(get_task(task_name).loss))
    return plan_refine(
        n_train=len(train[0]),
        n_val=n_val,
        examples_per_second=single.examples_per_second * config.processes,
        budget_s=config.budget_s,
        epochs=config.epochs,
        batch_size=single.batch_size,
        lr=config.lr,
        patience=config.patience,
        accumulation_steps=config.accumulation_steps,
    )


def weights_fingerprint(model: torch.nn.Module) -> str:
    """A hash of every tensor in the model's state, bit for bit."""
    state = model.state_dict().values()
    return fingerprint_arrays(
        *(v.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy() for v in state)
    )
