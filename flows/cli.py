"""`orca`: the command line.

    orca run TASK [--backbone NAME] [--method orca|no-align] [--seed N] [--set S.K=V]... [--json]
    orca tasks [--json]
    orca demo [--json]

Arguments are validated before Prefect or any model is loaded, so a bad name fails at once
with the valid choices. State goes under $ORCA_HOME (default ./.orca).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from orca.methods import METHODS
from orca.state import activate

DEMO_TASK = "gunpoint"


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
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the five-stage pipeline on one task")
    run.add_argument("task")
    run.add_argument("--backbone", help="body name or local model directory (default: task's)")
    run.add_argument("--method", default="orca", help=f"one of: {', '.join(METHODS.names())}")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.FIELD=VALUE",
        help="override a hyperparameter, e.g. refine.lr=1e-4 (repeatable)",
    )
    run.add_argument("--json", action="store_true", help="print the result as JSON (last line)")

    tasks = commands.add_parser("tasks", help="list the registered tasks")
    tasks.add_argument("--json", action="store_true")

    demo = commands.add_parser("demo", help="run the embedded demo on packaged data and weights")
    demo.add_argument("--json", action="store_true")
    return parser


def _config_from_args(args: argparse.Namespace):
    from orca.pipeline_config import PipelineConfig

    return PipelineConfig.for_task(
        args.task,
        backbone=args.backbone,
        method=args.method,
        seed=args.seed,
        overrides=parse_overrides(args.overrides),
    )


def _run_pipeline(config, as_json: bool) -> dict[str, Any]:
    from flows.pipeline import pipeline

    started = time.perf_counter()
    result = pipeline(config)
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
        print(
            f"alignment distance: {result['align_distance']['initial']:.4f} -> "
            f"{result['align_distance']['final']:.4f}"
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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        activate(args.state_dir)
        if args.command == "tasks":
            _list_tasks(args.json)
            return 0
        if args.command == "demo":
            args.task, args.backbone, args.method, args.seed, args.overrides = (
                DEMO_TASK,
                None,
                "orca",
                0,
                [],
            )
        config = _config_from_args(args)
    except ValueError as error:
        print(f"orca: error: {error}", file=sys.stderr)
        return 2
    _run_pipeline(config, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
