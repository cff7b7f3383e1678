"""Stage: fine-tune embedder, body and predictor; keep the best model on validation."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from orca.atomic import atomic_directory
from orca.checkpoint import load_into, save_state
from orca.config import RefineConfig
from orca.data.arrow_io import read_split
from orca.data.tasks import get_task
from orca.fingerprint import fingerprint_arrays, fingerprint_file
from orca.metrics import LOSSES, METRICS
from orca.model import create_model
from orca.training.finetune import EpochRecord, fine_tune
from orca.training.refine_modes import apply_refine_mode
from orca.training.replicas import SINGLE, Replicas


def device_for_training() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _tensors(path: str) -> tuple[torch.Tensor, torch.Tensor]:
    split = read_split(path)
    return torch.from_numpy(split.x), torch.from_numpy(split.y)


def checkpoints_for(out_dir: str | Path) -> Path:
    """Where refine keeps its per-epoch checkpoints for `out_dir`: a sibling that outlives a
    failed attempt."""
    out_dir = Path(out_dir)
    return out_dir.with_name(out_dir.name + ".checkpoints")


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
    device: torch.device | None = None,
) -> dict[str, Any]:
    """Build the model, fine-tune the parameters `mode` selects (this process's share, with
    `replicas`), and on the main process write the best state to `model_path`. Returns the
    run's summary; with several processes, `replica_weights` holds a fingerprint of each
    rank's final weights (DistributedDataParallel keeps them equal)."""
    torch.manual_seed(seed)
    spec = get_task(task_name)
    model = create_model(spec, backbone, seed=seed, pretrained=pretrained)
    load_into(model.embedder, embedder["path"])
    trainable = set(apply_refine_mode(model, mode))
    model.to(device or device_for_training())
    result = fine_tune(
        model,
        _tensors(dataset["splits"]["train"]["path"]),
        _tensors(dataset["splits"]["validation"]["path"]),
        config,
        LOSSES.get(spec.loss),
        METRICS.get(spec.metric),
        seed=seed,
        on_epoch=on_epoch,
        checkpoint_dir=checkpoint_dir,
        replicas=replicas,
    )
    if replicas.is_main:
        save_state(
            model_path,
            result.best_state,
            {"task": task_name, "backbone": backbone, "best_epoch": str(result.best_epoch)},
        )
    summary = {
        "best_epoch": result.best_epoch,
        "best_val_metric": result.best_val_metric,
        "stopped_early": result.stopped_early,
        "resumed_from_epoch": result.resumed_from_epoch,
        "trainable_parameters": sum(
            p.numel() for name, p in model.named_parameters() if name in trainable
        ),
        "history": [record.to_dict() for record in result.history],
    }
    if replicas.world_size > 1:
        summary["replica_weights"] = replicas.gather(weights_fingerprint(model))
    return summary


def weights_fingerprint(model: torch.nn.Module) -> str:
    """A hash of every tensor in the model's state, bit for bit."""
    state = model.state_dict().values()
    return fingerprint_arrays(
        *(v.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy() for v in state)
    )


def refine(
    task_name: str,
    backbone: str,
    dataset: dict[str, Any],
    embedder: dict[str, Any],
    config: RefineConfig,
    out_dir: str | Path,
    seed: int,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    mode: str = "full",
    pretrained: bool = True,
) -> dict[str, Any]:
    """Fine-tune the parameters that `mode` selects; keep the best epoch on validation.

    Each epoch is checkpointed next to `out_dir` (in `<out_dir>.checkpoints`, since `out_dir`
    itself only appears, atomically, once the stage is done), so a retry with the same
    `out_dir` resumes a crashed attempt; the checkpoints are deleted once the model is written.
    With `config.processes` > 1 the training runs on that many torchrun processes
    (orca.stages.refine_distributed); `on_epoch` still sees every epoch, here.
    """
    out_dir = Path(out_dir)
    checkpoint_dir = checkpoints_for(out_dir)
    if config.processes > 1:
        from orca.stages.refine_distributed import fine_tune_on_processes as train
    else:
        train = fine_tune_and_save
    with atomic_directory(out_dir) as tmp:
        model_path = tmp / "model.safetensors"
        summary = train(
            task_name,
            backbone,
            dataset,
            embedder,
            config,
            seed,
            model_path=model_path,
            checkpoint_dir=checkpoint_dir,
            on_epoch=on_epoch,
            mode=mode,
            pretrained=pretrained,
        )
        fingerprint = fingerprint_file(model_path)
    shutil.rmtree(checkpoint_dir, ignore_errors=True)
    return {
        "path": str(out_dir / "model.safetensors"),
        **summary,
        "mode": mode,
        "processes": config.processes,
        "fingerprint": fingerprint,
    }
