"""`orca run`, `orca ingest` and `orca tasks`: one task through the pipeline, one task's
splits alone, and the registered tasks.

    orca run [TASK] [--task-file F] [--allow-outside] [--data-dir D] [--backbone NAME]
             [--method M] [--seed N] [--device auto|cuda|cpu] [--preset orca|paper]
             [--set S.K=V]... [--json]
    orca ingest [TASK] [--task-file F] [--allow-outside] [--data-dir D] [--json]
    orca tasks [--json]
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from cli.command import TRACKING_PRELOAD, Args, Command
from cli.options import (
    AllowOutside,
    DataDir,
    Device,
    Json,
    Overrides,
    Preset,
    Task,
    TaskFile,
    parse_overrides,
)
from cli.retry import result_or_exit
from orca.methods import METHODS


def define_run(
    task: Task = None,
    task_file: TaskFile = None,
    allow_outside: AllowOutside = False,
    data_dir: DataDir = None,
    backbone: Annotated[
        str | None,
        typer.Option(help="body name or local model directory (default: the task's)"),
    ] = None,
    method: Annotated[str, typer.Option(help=f"one of: {', '.join(METHODS.names())}")] = "orca",
    seed: Annotated[int, typer.Option(help="the run's seed")] = 0,
    device: Device = "auto",
    preset: Preset = None,
    overrides: Overrides = None,
    json: Json = False,
) -> Args:
    """Run the pipeline on one task: ingest, proxy, align, refine, evaluate (a classical
    method: ingest, classical). Finished stages come from the cache."""
    return Args(**locals())


def define_ingest(
    task: Task = None,
    task_file: TaskFile = None,
    allow_outside: AllowOutside = False,
    data_dir: DataDir = None,
    json: Json = False,
) -> Args:
    """Check and store a task's splits only."""
    return Args(**locals())


def define_tasks(json: Json = False) -> Args:
    """List the registered tasks."""
    return Args(**locals())


def config_from_args(args: Args):
    """The run's PipelineConfig, validated (ValueError, UserError: what is wrong)."""
    from orca.config.pipeline import PipelineConfig

    if args.data_dir:
        os.environ["ORCA_DATA_DIR"] = str(Path(args.data_dir).expanduser().resolve())
    if not args.task and not args.task_file:
        raise ValueError("give a TASK (see `orca tasks`) or --task-file FILE")
    return PipelineConfig.for_task(
        args.task,
        backbone=getattr(args, "backbone", None),
        method=getattr(args, "method", "orca"),
        seed=getattr(args, "seed", 0),
        overrides=parse_overrides(getattr(args, "overrides", None)),
        task_file=args.task_file,
        allow_outside=args.allow_outside,
        device=getattr(args, "device", "auto"),
        preset=getattr(args, "preset", None),
    )


def ingest(config, as_json: bool) -> dict[str, Any]:
    from flows.ingest import ingest_only

    reference = ingest_only(config)
    if as_json:
        print(json.dumps(reference))
    else:
        for name, split in reference["splits"].items():
            print(f"{name:10s} {split['rows']:7d} rows  {split['path']}")
    return reference


def run_pipeline(config, as_json: bool) -> dict[str, Any]:
    """The pipeline flow on `config`, with progress bars on a terminal; its summary."""
    from cli.progress import progress_bars
    from flows.pipeline import pipeline
    from orca.stages.order import FAMILY_STAGES

    started = time.perf_counter()
    label = f"{config.task}/{config.method}/seed{config.seed}"
    with progress_bars(not as_json, stages=FAMILY_STAGES[config.family], label=label):
        state = pipeline(config, return_state=True)
    result = result_or_exit(state)
    result["wall_seconds"] = round(time.perf_counter() - started, 2)
    if as_json:
        print(json.dumps(result))
    else:
        print_run_summary(result)
    return result


def print_run_summary(result: dict[str, Any]) -> None:
    direction = "lower is better" if result["lower_is_better"] else "higher is better"
    print(
        f"\n{result['task']} / {result['method']} / {result['backbone']} "
        f"(seed {result['seed']}): test {result['metric']} = {result['value']:.4f} "
        f"({direction})"
    )
    print("stages: " + ", ".join(f"{k}={v}" for k, v in result["states"].items()))
    if result["align_distance"] is not None:
        print(
            f"alignment distance: {result['align_distance']['initial']:.4f} -> "
            f"{result['align_distance']['final']:.4f}"
        )
    if "hyperparameters" in result:  # a classical method
        print(
            f"chosen on validation: {result['hyperparameters']} "
            f"({result['metric']} {result['validation_value']:.4f})"
        )
    print(
        f"mlflow run {result['mlflow_run_id']}, model {result['registered_model']}, "
        f"flow run {result['flow_run_id']}, {result['wall_seconds']} s"
    )


def list_tasks(as_json: bool) -> list[dict[str, Any]]:
    from cli.tables import METRIC_LEGEND, print_table, tasks_table
    from orca.data.tasks import get_task, task_names

    described = [get_task(name).describe() for name in task_names()]
    if as_json:
        print(json.dumps(described))
    else:
        print_table(tasks_table(described), METRIC_LEGEND)
    return described


COMMANDS = {
    "run": Command(
        define_run,
        config_from_args,
        lambda args, config: run_pipeline(config, args.json),
        uses_prefect=True,
        preload=("flows.pipeline", *TRACKING_PRELOAD),
    ),
    "ingest": Command(
        define_ingest,
        config_from_args,
        lambda args, config: ingest(config, args.json),
        uses_prefect=True,
        preload=("flows.ingest",),
    ),
    "tasks": Command(define_tasks, lambda args: None, lambda args, _: list_tasks(args.json)),
}
