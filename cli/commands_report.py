"""`orca compare` and `orca ablations`: the commands that write a report.

    orca compare [--sweep-run ID] [--reports-dir DIR] [--json]
    orca ablations [--task T] [--image-task T] [--seeds N] [--reports-dir DIR]
                   [--set S.K=V]... [--json]

`compare` reads a sweep's results back from MLflow (the latest by default), writes the
comparison under --reports-dir and crowns each task's champion model; with --json it prints
one JSON object with `sweep_run_id`, `rows`, `report` and `champions`.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from cli.command import TRACKING_PRELOAD, Args, Command
from cli.options import Json, Overrides, ReportsDir, Seeds, parse_overrides

COMPARE_JSON_KEYS = ("sweep_run_id", "rows", "report", "champions")


def define_compare(
    sweep_run: Annotated[
        str | None,
        typer.Option(
            "--sweep-run",
            "--benchmark-run",  # its name before sweeps were called sweeps
            help="the sweep's MLflow run id (default: the latest)",
        ),
    ] = None,
    reports_dir: ReportsDir = "reports",
    json: Json = False,
) -> Args:
    """The comparison report of a sweep: a table of every task x method."""
    return Args(**locals())


def define_ablations(
    task: Annotated[str, typer.Option(help="the time-series task")] = "gunpoint",
    image_task: Annotated[str, typer.Option(help="the image task")] = "digits",
    seeds: Seeds = 2,
    reports_dir: ReportsDir = "reports",
    overrides: Overrides = None,
    json: Json = False,
) -> Args:
    """The paper's ablations, with a report."""
    return Args(**locals())


def sweep_to_compare(args: Args) -> str:
    """The sweep run `orca compare` reports on (the latest by default), checked before
    the compare flow starts: no sweep run yet, or one with no finished runs, is a
    user error (one line, exit status 2), not a failed flow with a traceback."""
    from orca.errors import NoResultsError
    from tasks import sweep_tracking

    run_id = args.sweep_run or sweep_tracking.latest_sweep_run_id()
    if not sweep_tracking.sweep_results.fn(run_id):
        raise NoResultsError(f"sweep run {run_id} has no finished pipeline runs")
    return run_id


def run_compare(
    sweep_run_id: str | None, reports_dir: str, as_json: bool, quiet: bool = False
) -> dict[str, Any]:
    """The compare flow; prints its table and the report's path (or the JSON) unless
    `quiet`."""
    from flows.compare import compare

    out = compare(sweep_run_id, reports_dir=reports_dir)
    if quiet:
        return out
    if as_json:
        print(json.dumps({key: out[key] for key in COMPARE_JSON_KEYS}))
    else:
        print_comparison(out["rows"])
        print(f"report: {out['report']}")
    return out


def print_comparison(rows: list[dict[str, Any]]) -> None:
    from cli.tables import COMPARISON_LEGEND, comparison_table, print_table

    print_table(comparison_table(rows), COMPARISON_LEGEND)


def ablation_overrides(args: Args) -> dict[str, dict[str, Any]]:
    """The overrides, once the whole AblationConfig (seeds, tasks, every run) validates."""
    from orca.config.ablation import AblationConfig

    overrides = parse_overrides(args.overrides)
    AblationConfig(
        task=args.task, image_task=args.image_task, seeds=args.seeds, overrides=overrides
    )
    return overrides


def run_ablations(args: Args, overrides: dict[str, Any]) -> dict[str, Any]:
    from flows.ablations import ablations
    from orca.config.ablation import AblationConfig

    config = AblationConfig(
        task=args.task, image_task=args.image_task, seeds=args.seeds, overrides=overrides
    )
    out = ablations(config, reports_dir=args.reports_dir)
    if args.json:
        print(json.dumps({"report": out["report"], "skipped": out["skipped"]}))
    else:
        print(out["text"])
        print(f"report: {out['report']}")
    return out


COMMANDS = {
    "compare": Command(
        define_compare,
        sweep_to_compare,
        lambda args, run_id: run_compare(run_id, args.reports_dir, args.json),
        uses_prefect=True,
        preload=("flows.compare", *TRACKING_PRELOAD),
    ),
    "ablations": Command(
        define_ablations,
        ablation_overrides,
        lambda args, overrides: run_ablations(args, overrides),
        uses_prefect=True,
        preload=("torch", "flows.ablations", *TRACKING_PRELOAD),
    ),
}
