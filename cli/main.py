"""`orca`: the command line.

    orca run [TASK] [--task-file F] [--data-dir D] [--backbone NAME] [--method M] [--seed N]
             [--set S.K=V]... [--json]
    orca ingest [TASK] [--task-file F] [--data-dir D]
    orca tasks [--json]
    orca retry FLOW_RUN_ID [--json]              (see cli/retry.py)
    orca ui [--host H] [--prefect-port P] [--mlflow-port Q] [--json]  (see cli/ui.py)
    orca bench / compare / ablations / demo      (see cli/bench.py)
    orca otdd SOURCE.npz TARGET.npz [--inner KIND] [--outer KIND] ...  (see cli/otdd.py)

Arguments are validated before Prefect or any model is loaded, so a bad name fails at once
with the valid choices. State goes under $ORCA_HOME (default ./.orca).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cli import bench as cli_bench
from cli import otdd as cli_otdd
from cli import retry as cli_retry
from cli import ui as cli_ui
from orca import stopping
from orca.errors import UserError
from orca.methods import METHODS
from runtime import prefect_api
from runtime.state import activate


class UsageError(ValueError):
    """A command-line argument is invalid."""


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_overrides(items: list[str]) -> dict[str, dict[str, Any]]:
    """Turn ["refine.lr=1e-4", "align.epochs=5"] into {"refine": {"lr": 1e-4}, ...}."""
    overrides: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        section, dot, field = key.partition(".")
        if not sep or not dot or not field:
            raise UsageError(f"--set {item!r}: expected SECTION.FIELD=VALUE, e.g. refine.lr=1e-4")
        overrides.setdefault(section, {})[field] = _parse_value(value)
    return overrides


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="orca", description=__doc__.split("\n")[0])
    parser.add_argument("--state-dir", help="state directory (default: $ORCA_HOME or ./.orca)")
    parser.add_argument(
        "--result-storage",
        help="where cache records go: a path or an fsspec URL such as s3://bucket/prefix "
        "(default: $ORCA_RESULT_STORAGE, else the state directory's results/)",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the five-stage pipeline on one task")
    _add_task_arguments(run)
    run.add_argument("--backbone", help="body name or local model directory (default: task's)")
    run.add_argument("--method", default="orca", help=f"one of: {', '.join(METHODS.names())}")
    run.add_argument("--seed", type=int, default=0)
    _add_overrides(run)
    run.add_argument("--json", action="store_true", help="print the result as JSON (last line)")

    ingest = commands.add_parser("ingest", help="check and store a task's splits only")
    _add_task_arguments(ingest)
    ingest.add_argument("--json", action="store_true")

    tasks = commands.add_parser("tasks", help="list the registered tasks")
    tasks.add_argument("--json", action="store_true")

    cli_bench.add_parsers(commands, _add_overrides)
    cli_retry.add_parser(commands)
    cli_ui.add_parser(commands)

    cli_otdd.add_parser(commands)
    return parser


def _add_task_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("task", nargs="?", help="a registered task (see `orca tasks`)")
    parser.add_argument("--task-file", help="a YAML task file (your own data; see README)")
    parser.add_argument(
        "--allow-outside",
        action="store_true",
        help="let the task file's split files lie outside its folder",
    )
    parser.add_argument(
        "--data-dir", help="where published benchmark files live (sets $ORCA_DATA_DIR)"
    )


def _add_overrides(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.FIELD=VALUE",
        help="override a hyperparameter, e.g. refine.lr=1e-4 (repeatable)",
    )


def _config_from_args(args: argparse.Namespace):
    from orca.config.pipeline import PipelineConfig

    if args.data_dir:
        os.environ["ORCA_DATA_DIR"] = str(Path(args.data_dir).expanduser().resolve())
    if not args.task and not args.task_file:
        raise UsageError("give a TASK (see `orca tasks`) or --task-file FILE")
    return PipelineConfig.for_task(
        args.task,
        backbone=getattr(args, "backbone", None),
        method=getattr(args, "method", "orca"),
        seed=getattr(args, "seed", 0),
        overrides=parse_overrides(getattr(args, "overrides", [])),
        task_file=args.task_file,
        allow_outside=args.allow_outside,
    )


def _ingest(config, as_json: bool) -> None:
    from flows.ingest import ingest_only

    reference = ingest_only(config)
    if as_json:
        print(json.dumps(reference))
        return
    for name, split in reference["splits"].items():
        print(f"{name:10s} {split['rows']:7d} rows  {split['path']}")


def _run_pipeline(config, as_json: bool) -> dict[str, Any]:
    from cli.progress import progress_bar
    from flows.pipeline import pipeline, pipeline_stages

    started = time.perf_counter()
    with progress_bar(enabled=not as_json, stages=pipeline_stages(config)):
        state = pipeline(config, return_state=True)
    result = cli_retry.result_or_exit(state)
    result["wall_seconds"] = round(time.perf_counter() - started, 2)
    if as_json:
        print(json.dumps(result))
    else:
        direction = "lower is better" if result["lower_is_better"] else "higher is better"
        print(
            f"\n{result['task']} / {result['method']} / {result['backbone']} "
            f"(seed {result['seed']}): test {result['metric']} = {result['value']:.4f} "
            f"({direction})"
        )
        print("stages: " + ", ".join(f"{k}={v}" for k, v in result["stages"].items()))
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
    return result


def _list_tasks(as_json: bool) -> None:
    from orca.data.tasks import get_task, task_names

    described = [get_task(name).describe() for name in task_names()]
    if as_json:
        print(json.dumps(described))
        return
    for task in described:
        print(
            f"{task['name']:12s} {task['modality']:8s} {task['output']:15s} "
            f"{task['metric']:12s} {task['description']}"
        )


def main(argv: list[str] | None = None, after_load: Callable[[], None] | None = None) -> int:
    """Parse, validate and run one command; `after_load` is called once the command's
    modules are imported, before it waits for the Prefect API (cli/console.py)."""
    args = build_parser().parse_args(argv)
    if args.command == "otdd":
        return cli_otdd.run(args)
    try:
        activate(args.state_dir, args.result_storage)
        command = COMMANDS[args.command]
        if command.uses_prefect:
            prefect_api.boot()  # the server starts while this process loads the command
        prepared = command.prepare(args)
        for module in command.preload:
            importlib.import_module(module)
        if after_load is not None:
            after_load()
    except (ValueError, FileNotFoundError, UserError) as error:
        print(f"orca: error: {error}", file=sys.stderr)
        return 2
    try:
        api = prefect_api.shared_prefect_api() if command.uses_prefect else nullcontext()
        with stopping.handle_stop_signals(), api:  # SIGTERM, SIGINT: stop at a safe point
            result = command.run(args, prepared)
    except UserError as error:  # found after work started: still one line, no traceback
        print(f"orca: error: {error}", file=sys.stderr)
        return 2
    except BaseException as error:
        if not stopping.is_stop(error):
            raise
        return _stopped(error)
    if stopping.stop_requested():  # runs in worker threads stopped; this one carried on
        return _stopped(None)
    return command.status(result)


def _stopped(error: BaseException | None) -> int:
    """One line on how the command stopped and how to resume; the exit status 128 + signal."""
    signum = getattr(error, "signum", None) or stopping.requesting_signal()
    if signum is None:
        signum = signal.SIGINT if isinstance(error, KeyboardInterrupt) else signal.SIGTERM
    detail = f"stopped by {stopping.signal_name(signum)}"
    if isinstance(error, stopping.StopRequested):
        detail = str(error)
    print(
        f"orca: {detail}. Finished stages are cached and "
        "training keeps its checkpoints: run the same command again to resume.",
        file=sys.stderr,
    )
    return 128 + signum


@dataclass(frozen=True)
class Command:
    """prepare(args) validates everything (errors exit 2 before any work); run does it.

    A command that `uses_prefect` runs with the command's shared Prefect API
    (runtime/prefect_api.py), which starts booting before prepare; the modules in `preload`
    are imported in the meantime, before the command waits for the API."""

    prepare: Callable[[argparse.Namespace], Any]
    run: Callable[[argparse.Namespace, Any], Any]
    uses_prefect: bool = False
    preload: tuple[str, ...] = ()
    status: Callable[[Any], int] = lambda _result: 0  # the exit status, from run's result


def _runs_failed(result: dict[str, Any]) -> int:
    """Exit status 1 when any run of a benchmark failed (its report is still written)."""
    return 1 if result["failures"] else 0


def _bench_config(args: argparse.Namespace):
    cli_bench.check_parallelism(args)
    return cli_bench.sweep_config(args, parse_overrides(args.overrides))


def _ablation_overrides(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """The overrides, once the whole AblationConfig (seeds, tasks, every run) validates."""
    from orca.config.ablation import AblationConfig

    overrides = parse_overrides(args.overrides)
    AblationConfig(
        task=args.task, image_task=args.image_task, seeds=args.seeds, overrides=overrides
    )
    return overrides


def _demo_config(args: argparse.Namespace):
    from orca.config.sweep import SweepConfig

    cli_bench.check_parallelism(args)
    methods = tuple(args.methods or cli_bench.DEMO_METHODS)
    return SweepConfig(suite=cli_bench.DEMO_SUITE, methods=methods, seeds=args.seeds)


# MLflow's SQL store module takes about 0.5 s to import: imported while the API boots, it
# is not imported on the way to the first MLflow run.
TRACKING_PRELOAD = ("mlflow.store.tracking.sqlalchemy_store",)
BENCH_PRELOAD = ("torch", "flows.sweep", "runtime.runners", *TRACKING_PRELOAD)
COMMANDS = {
    "run": Command(
        _config_from_args,
        lambda args, config: _run_pipeline(config, args.json),
        uses_prefect=True,
        preload=("flows.pipeline", *TRACKING_PRELOAD),
    ),
    "ingest": Command(
        _config_from_args,
        lambda args, config: _ingest(config, args.json),
        uses_prefect=True,
        preload=("flows.ingest",),
    ),
    "tasks": Command(lambda args: None, lambda args, _: _list_tasks(args.json)),
    "bench": Command(
        _bench_config,
        lambda args, config: cli_bench.run_bench(config, cli_bench.runner_options(args), args.json),
        uses_prefect=True,
        preload=BENCH_PRELOAD,
        status=_runs_failed,
    ),
    "compare": Command(
        cli_bench.sweep_to_compare,
        lambda args, run_id: cli_bench.run_compare(run_id, args.reports_dir, args.json),
        uses_prefect=True,
        preload=("flows.compare", *TRACKING_PRELOAD),
    ),
    "ablations": Command(
        _ablation_overrides,
        lambda args, overrides: cli_bench.run_ablations(args, overrides),
        uses_prefect=True,
        preload=("torch", "flows.ablations", *TRACKING_PRELOAD),
    ),
    "demo": Command(
        _demo_config,
        cli_bench.run_demo,
        uses_prefect=True,
        preload=(*BENCH_PRELOAD, "flows.compare"),
        status=_runs_failed,
    ),
    "retry": Command(cli_retry.prepare, cli_retry.run, uses_prefect=True),
    "ui": Command(cli_ui.prepare, cli_ui.run),
}

if __name__ == "__main__":
    from cli.console import console_main

    sys.exit(console_main())
