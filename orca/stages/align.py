"""Stage: embedder learning (distribution alignment to the proxy features)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from orca.alignment.pseudo_labels import kmeans_pseudo_labels
from orca.atomic import atomic_directory
from orca.checkpoint import checkpoints_for, save_state
from orca.config.stages import AlignConfig
from orca.data.arrow_io import read_split
from orca.data.tasks import get_task
from orca.fingerprint import fingerprint_file
from orca.model import create_model
from orca.training.align import train_embedder

PSEUDO_LABEL_CLUSTERS = 10


def align(
    task_name: str,
    backbone: str,
    dataset: dict[str, Any],
    proxy: dict[str, Any],
    config: AlignConfig,
    epochs: int,
    out_dir: str | Path,
    seed: int,
    on_epoch: Callable[[int, float], None] | None = None,
    pretrained: bool = True,
) -> dict[str, Any]:
    """Train the embedder for `epochs` (0 keeps its initialisation) and save it. A stopped
    attempt's state (orca.training.align_state) is kept next to `out_dir` and continued."""
    torch.manual_seed(seed)
    spec = get_task(task_name)
    model = create_model(spec, backbone, seed=seed, pretrained=pretrained)
    train = read_split(dataset["splits"]["train"]["path"])
    source = read_split(proxy["path"])
    model.fit_scalers(torch.from_numpy(train.x), torch.from_numpy(train.y))
    # Class labels where the task has them; k-means pseudo-labels of the targets otherwise.
    labels = (
        train.y
        if spec.output == "classification"
        else kmeans_pseudo_labels(train.y, k=PSEUDO_LABEL_CLUSTERS, seed=seed)
    )
    history = train_embedder(
        model,
        torch.from_numpy(train.x),
        torch.from_numpy(labels).long(),
        torch.from_numpy(source.x),
        torch.from_numpy(source.y).long(),
        config.replace(epochs=epochs),
        seed=seed,
        on_epoch=on_epoch,
        checkpoint_dir=checkpoints_for(out_dir),
    )
    out_dir = Path(out_dir)
    with atomic_directory(out_dir, manifest=True) as tmp:
        save_state(
            tmp / "embedder.safetensors",
            model.embedder.state_dict(),
            {"task": task_name, "backbone": backbone},
        )
        fingerprint = fingerprint_file(tmp / "embedder.safetensors")
    shutil.rmtree(checkpoints_for(out_dir), ignore_errors=True)  # a stopped attempt's state
    return {
        "path": str(out_dir / "embedder.safetensors"),
        "epochs": epochs,
        "distances": history.distances,
        "stopped_early": history.stopped_early,
        "fingerprint": fingerprint,
    }
