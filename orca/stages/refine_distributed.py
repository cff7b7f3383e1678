"""Stage 3 on several processes: torchrun starts `refine.processes` ranks of this module.

    python -m torch.distributed.run --standalone --nproc-per-node N \\
        -m orca.stages.refine_distributed JOB.json

The refine stage writes the job (its arguments, as JSON) and starts the ranks through
orca.training.torchrun. Each rank builds the same model and trains on its share of every
epoch through DistributedDataParallel (on the run's device: NCCL on one GPU per rank, gloo
on the CPU). The main rank alone writes the model file and the checkpoints, and appends
each epoch's record to a JSON-lines file that the stage follows, so the stage still logs
every epoch as it ends (and only the stage, in its own process, talks to Prefect or
MLflow). When the ranks are done the main rank writes the run's summary, which the stage
returns.

A task from a user's YAML file is registered again in each rank from that file; tasks
registered in code only (tests) are not known there.
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from orca.atomic import atomic_path
from orca.config.stages import RefineConfig
from orca.data.task_file import load_task_file
from orca.data.tasks import get_task
from orca.devices import resolve_device
from orca.stages.refine_train import fine_tune_and_save
from orca.training.finetune import EpochRecord
from orca.training.replicas import process_group
from orca.training.torchrun import run_module


def fine_tune_on_processes(
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
    device: str = "auto",
) -> dict[str, Any]:
    """orca.stages.refine_train.fine_tune_and_save on `config.processes` torchrun processes;
    `on_epoch` is called here for each epoch the main rank reports. On CUDA (`device`,
    orca.devices) each process needs a GPU of its own (NCCL)."""
    device = resolve_device(device)
    gpus = torch.cuda.device_count() if device == "cuda" else 0
    if gpus and config.processes > gpus:
        raise ValueError(
            f"refine.processes={config.processes} needs one GPU per process; "
            f"this machine has {gpus}"
        )
    with tempfile.TemporaryDirectory(prefix="orca-refine-ranks-") as work:
        work_dir = Path(work)
        job = {
            "task_name": task_name,
            "task_file": get_task(task_name).source_file,
            "backbone": backbone,
            "dataset": dataset,
            "embedder": embedder,
            "config": config.to_dict(),
            "seed": seed,
            "mode": mode,
            "pretrained": pretrained,
            "device": device,
            "model_path": str(model_path),
            "checkpoint_dir": str(checkpoint_dir),
            "records": str(work_dir / "epochs.jsonl"),
            "summary": str(work_dir / "summary.json"),
        }
        job_path = work_dir / "job.json"
        job_path.write_text(json.dumps(job))

        def report(record: dict[str, Any]) -> None:
            if on_epoch is not None:
                on_epoch(EpochRecord(**record))

        run_module(
            __name__, [str(job_path)], config.processes, Path(job["records"]), on_record=report
        )
        return json.loads(Path(job["summary"]).read_text())


def run_rank(job: dict[str, Any]) -> None:
    """One rank of the job (in a process that torchrun started)."""
    if job["task_file"] is not None:
        load_task_file(job["task_file"], allow_outside=True)  # the parent accepted it
    records = Path(job["records"])
    with process_group(job["device"]) as (replicas, device):

        def append_record(record: EpochRecord) -> None:
            with open(records, "a") as handle:
                handle.write(json.dumps(record.to_dict()) + "\n")

        summary = fine_tune_and_save(
            job["task_name"],
            job["backbone"],
            job["dataset"],
            job["embedder"],
            RefineConfig.from_dict(job["config"]),
            job["seed"],
            model_path=Path(job["model_path"]),
            checkpoint_dir=Path(job["checkpoint_dir"]),
            on_epoch=append_record if replicas.is_main else None,
            mode=job["mode"],
            pretrained=job["pretrained"],
            replicas=replicas,
            device=device,
        )
        if replicas.is_main:
            with atomic_path(job["summary"]) as tmp:
                tmp.write_text(json.dumps(summary))


if __name__ == "__main__":
    run_rank(json.loads(Path(sys.argv[1]).read_text()))
