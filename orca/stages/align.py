"""Stage: embedder learning (distribution alignment to the proxy features).

Stage 2 runs on the run's device (orca.devices): the parts of the model it runs (the
input scaler and the embedder; the body never runs here) and the tensors it reads (target
inputs, their labels, the proxy features and labels) are moved there, so the alignment
loss (OTDD's Sinkhorn iterations included) is computed there too. The reference records
where the embedder's parameters were when training ended, and so does the saved file's
metadata.
"""

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
from orca.devices import device_of, torch_device
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
    device: str = "auto",
) -> dict[str, Any]:
    """Train the embedder for `epochs` (0 keeps its initialisation) on `device` (a name in
    orca.devices.DEVICES) and save it. A stopped attempt's state
    (orca.training.align_state) is kept next to `out_dir` and continued."""
    place = torch_device(device)
    torch.manual_seed(seed)
    spec = get_task(task_name)
    model = create_model(spec, backbone, seed=seed, pretrained=pretrained)
    train = read_split(dataset["splits"]["train"]["path"])
    source = read_split(proxy["path"])
    model.fit_scalers(torch.from_numpy(train.x), torch.from_numpy(train.y))
    model.embedder.to(place)
    if model.input_scaler is not None:
        model.input_scaler.to(place)
    # Class labels where the task has them; k-means pseudo-labels of the targets otherwise.
    labels = (
        train.y
        if spec.output == "classification"
        else kmeans_pseudo_labels(train.y, k=PSEUDO_LABEL_CLUSTERS, seed=seed)
    )
    history = train_embedder(
        model,
        torch.from_numpy(train.x).to(place),
        torch.from_numpy(labels).long().to(place),
        torch.from_numpy(source.x).to(place),
        torch.from_numpy(source.y).long().to(place),
        config.replace(epochs=epochs),
        seed=seed,
        on_epoch=on_epoch,
        checkpoint_dir=checkpoints_for(out_dir),
    )
    ran_on = device_of(model.embedder)
    out_dir = Path(out_dir)
    with atomic_directory(out_dir, manifest=True) as tmp:
        save_state(
            tmp / "embedder.safetensors",
            model.embedder.state_dict(),
            {"task": task_name, "backbone": backbone, "device": ran_on},
        )
        fingerprint = fingerprint_file(tmp / "embedder.safetensors")
    shutil.rmtree(checkpoints_for(out_dir), ignore_errors=True)  # a stopped attempt's state
    return {
        "path": str(out_dir / "embedder.safetensors"),
        "epochs": epochs,
        "distances": history.distances,
        "stopped_early": history.stopped_early,
        "device": ran_on,
        "fingerprint": fingerprint,
    }
