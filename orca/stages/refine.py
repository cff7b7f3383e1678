"""Stage: fine-tune embedder, body and predictor; keep the best model on validation.

The training itself is in orca.stages.refine_train (one process) and
orca.stages.refine_distributed (torchrun ranks); this module chooses between them and
writes the stage's output directory.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from orca.atomic import atomic_directory
from orca.checkpoint import checkpoints_for
from orca.config.stages import RefineConfig
from orca.fingerprint import fingerprint_file
from orca.stages.refine_distributed import fine_tune_on_processes
from orca.stages.refine_train import fine_tune_and_save, plan_for_processes
from orca.training.finetune import EpochRecord
from orca.training.recipe import RefinePlan


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
    on_plan: Callable[[RefinePlan], None] | None = None,
    device: str = "auto",
) -> dict[str, Any]:
    """Fine-tune the parameters that `mode` selects on `device` (a name in
    orca.devices.DEVICES); keep the best epoch on validation. The result's `device` says
    where the model was trained.

    The "auto" fields of `config` are chosen by the recipe (orca/training/recipe.py) and
    `on_plan` sees the plan before training starts; the returned summary holds it.

    Each epoch is checkpointed next to `out_dir` (in `<out_dir>.checkpoints`, since `out_dir`
    itself only appears, atomically, once the stage is done), so a retry with the same
    `out_dir` resumes a crashed attempt; the checkpoints are deleted once the model is written.
    With `config.processes` > 1 the training runs on that many torchrun processes
    (orca.stages.refine_distributed); `on_epoch` still sees every epoch, here.
    """
    out_dir = Path(out_dir)
    checkpoint_dir = checkpoints_for(out_dir)
    plan = None
    extra: dict[str, Any] = {"on_plan": on_plan}
    if config.processes > 1:
        train = fine_tune_on_processes
        extra = {}
        if config.needs_plan:  # every rank must train on the same plan: made here, once
            plan = plan_for_processes(
                task_name, backbone, dataset, embedder, config, seed, device=device
            )
            if on_plan is not None:
                on_plan(plan)
            config = config.resolved(plan)
    else:
        train = fine_tune_and_save
    with atomic_directory(out_dir, manifest=True) as tmp:
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
            device=device,
            **extra,
        )
        fingerprint = fingerprint_file(model_path)
    if plan is not None:
        summary["plan"] = plan.to_dict()
    shutil.rmtree(checkpoint_dir, ignore_errors=True)
    return {
        "path": str(out_dir / "model.safetensors"),
        **summary,
        "mode": mode,
        "processes": config.processes,
        "fingerprint": fingerprint,
    }
