"""`orca bench` and `orca demo`: sweeps of tasks x methods x seeds through the pipeline.

    orca bench (--suite NAME | --tasks T ... | --task-file F ...) [--allow-outside]
               [--methods M ...] [--seeds N] [--backbone B] [--set S.K=V]... [--workers N]
               [--threads N] [--runner local|dask] [--dask-address ADDRESS]
               [--device auto|cuda|cpu] [--preset orca|paper] [--json]
    orca demo [--seeds N] [--methods M ...] [--reports-dir DIR] [--workers N] [--threads N]
              [--runner R] [--dask-address ADDRESS] [--device auto|cuda|cpu] [--json]

--workers runs that many pipeline runs at once (worker processes, see runtime/runners.py);
--threads sets torch's threads per process (default: the cores divided among the workers,
so that the runs do not oversubscribe the CPU). --runner picks where the runs go (default
`local`: this process, or worker processes; `dask`: a Dask LocalCluster of --workers
processes, or the scheduler at --dask-address / $ORCA_DASK_ADDRESS).

`demo` is bench + compare on the embedded suite (packaged data and weights), then
reports/RESULTS.md with the machine, the date and the wall time.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from typing import Annotated, Any

import typer

from cli.command import TRACKING_PRELOAD, Args, Command
from cli.commands_report import COMPARE_JSON_KEYS, print_comparison, run_compare
from cli.options import (
    DaskAddress,
    Device,
    Json,
    Overrides,
    Preset,
    ReportsDir,
    Runner,
    Seeds,
    Threads,
    Workers,
    parse_overrides,
    runner_options,
)
from orca.suites import SUITES

DEMO_SUITE = "demo"
DEMO_SEEDS = 2
# ORCA, the same architecture from a random body, and the classical baselines (seconds
# each): the comparison the demo must win. Each neural run trains with the default recipe
# for its 30 s budget (orca/data/ucr.py); no-align, fpt and the alignment-metric variants
# (orca-mmd, orca-l2, orca-cosine) would each add about 6 minutes on 2 cores, so
# `orca demo --methods ...` or `orca bench` adds them.
DEMO_METHODS = ("orca", "scratch", "knn", "linear", "forest")
# Two runs at once: on a 2-core laptop that keeps both cores busy through the single-threaded
# parts of each run (Python, data loading, logging) at one torch thread each.
DEMO_WORKERS = 2

Methods = Annotated[
    list[str] | None,
    typer.Option("--methods", metavar="METHOD ...", help="the methods to run", show_default=False),
]


def define_bench(
    suite: Annotated[
        str | None, typer.Option(help=f"a task suite: {', '.join(SUITES.names())}")
    ] = None,
    tasks: Annotated[
        list[str] | None,
        typer.Option("--tasks", metavar="TASK ...", help="registered tasks", show_default=False),
    ] = None,
    task_files: Annotated[
        list[str] | None,
        typer.Option("--task-file", help="a YAML task file (repeatable)", show_default=False),
    ] = None,
    allow_outside: Annotated[
        bool,
        typer.Option(
            "--allow-outside", help="let task files' split files lie outside their folders"
        ),
    ] = False,
    methods: Methods = None,
    seeds: Seeds = 3,
    backbone: Annotated[
        str | None, typer.Option(help="body for every task (default: each task's)")
    ] = None,
    workers: Workers = 1,
    threads: Threads = None,
    runner: Runner = "local",
    dask_address: DaskAddress = None,
    device: Device = "auto",
    preset: Preset = None,
    overrides: Overrides = None,
    json: Json = False,
) -> Args:
    """Run tasks x methods x seeds through the pipeline (default methods: every
    registered one: ORCA, its variants and baselines, then the classical models)."""
    return Args(**locals())


def define_demo(
    seeds: Seeds = DEMO_SEEDS,
    methods: Methods = None,
    reports_dir: ReportsDir = "reports",
    workers: Workers = DEMO_WORKERS,
    threads: Threads = None,
    runner: Runner = "local",
    dask_address: DaskAddress = None,
    device: Device = "auto",
    json: Json = False,
) -> Args:
    """Bench + compare on the embedded suite (packaged data and weights), then
    reports/RESULTS.md (default methods: orca scratch knn linear forest)."""
    return Args(**locals())


def bench_config(args: Args):
    """The checked SweepConfig and runner options of `orca bench`."""
    from orca.config.sweep import DEFAULT_METHODS, SweepConfig

    runner = runner_options(args)
    config = SweepConfig(
        suite=args.suite,
        tasks=tuple(args.tasks or ()),
        task_files=tuple(args.task_files or ()),
        allow_outside=args.allow_outside,
        methods=tuple(args.methods or DEFAULT_METHODS),
        seeds=args.seeds,
        backbone=args.backbone,
        overrides=parse_overrides(args.overrides),
        device=args.device,
        preset=args.preset or "orca",
    )
    return config, runner


def demo_config(args: Args):
    """The checked SweepConfig and runner options of `orca demo`."""
    from orca.config.sweep import SweepConfig

    runner = runner_options(args)
    methods = tuple(args.methods or DEMO_METHODS)
    config = SweepConfig(suite=DEMO_SUITE, methods=methods, seeds=args.seeds, device=args.device)
    return config, runner


def run_bench(config, runner, as_json: bool, quiet: bool = False) -> dict[str, Any]:
    """The sweep flow on the task runner `runner` names (runtime/runners.py), with progress
    bars on a terminal; prints its summary (or the JSON) unless `quiet`."""
    import torch

    from cli.progress import progress_bars
    from flows.sweep import sweep
    from orca.stopping import shared_stop_file
    from runtime.prefect_api import shared_prefect_api
    from runtime.runners import open_task_runner
    from runtime.state import StateDir

    torch.set_num_threads(runner.threads)
    started = time.perf_counter()
    # A stop (SIGTERM, SIGINT) in this process reaches the runs in worker processes too.
    stop_file = StateDir.from_env().root / "stops" / f"bench-{os.getpid()}-{uuid.uuid4().hex}"
    with (
        shared_stop_file(stop_file),
        shared_prefect_api(),
        open_task_runner(runner) as runs,
        progress_bars(not as_json, runs=len(config.runs())),
    ):
        state = sweep.with_options(task_runner=runs)(config, return_state=True)
    out = state.result(raise_on_failure=False)
    if isinstance(out, BaseException):  # the flow itself failed, not some of its runs
        raise out
    summary = {
        "sweep_run_id": out["sweep_run_id"],
        "runs": len(out["results"]),
        "failures": out["failures"],
        "wall_seconds": round(time.perf_counter() - started, 1),
        "reused": sum("reused_from" in result for result in out["results"]),
        "results": [
            {key: result[key] for key in ("task", "method", "seed", "metric", "value")}
            for result in out["results"]
        ],
    }
    if quiet:
        return summary
    if as_json:
        print(json.dumps(summary))
        return summary
    print(
        f"sweep {summary['sweep_run_id']}: {summary['runs']} runs, "
        f"{len(summary['failures'])} failed, {summary['wall_seconds']} s"
    )
    for failure in summary["failures"]:
        print(f"  failed: {failure}")
    return summary


def run_demo(args: Args, config, runner) -> dict[str, Any]:
    """bench + compare on the embedded suite, then reports/RESULTS.md with the machine, the
    date and the wall time; prints the table and the report's path (or one JSON object)."""
    from datetime import datetime, timezone
    from pathlib import Path

    import torch

    from orca.reporting.results import machine_description, write_results

    started = time.perf_counter()
    bench = run_bench(config, runner, args.json, quiet=args.json)  # with --json: one object
    out = run_compare(bench["sweep_run_id"], args.reports_dir, args.json, quiet=True)
    wall = time.perf_counter() - started
    methods = " ".join(config.methods)
    context = {
        "command": f"orca demo --seeds {config.seeds} --methods {methods} --workers {args.workers}"
        + ("" if args.runner == "local" else f" --runner {args.runner}")
        + ("" if args.device == "auto" else f" --device {args.device}"),
        "machine": f"{machine_description()}; torch {torch.__version__}, "
        f"{torch.get_num_threads()} torch thread(s) per run, {args.workers} run(s) at once",
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "wall time": f"{wall:.0f} s ({bench['wall_seconds']:.0f} s sweep, "
        f"{wall - bench['wall_seconds']:.0f} s compare)",
        "runs": f"{bench['runs']} finished ({bench['reused']} reused from the run cache), "
        f"{len(bench['failures'])} failed",
    }
    results = write_results(Path(args.reports_dir) / "RESULTS.md", out["report"], context)
    if args.json:
        summary = {key: out[key] for key in COMPARE_JSON_KEYS}
        counts = {key: bench[key] for key in ("runs", "reused", "failures")}
        wall_seconds = round(wall, 1)
        print(
            json.dumps({**summary, **counts, "results": str(results), "wall_seconds": wall_seconds})
        )
    else:
        print_comparison(out["rows"])
        print(f"report: {results} (and {out['report']})")
    return {**out, "failures": bench["failures"]}


def runs_failed(result: dict[str, Any]) -> int:
    """Exit status 1 when any run of a sweep failed (its report is still written)."""
    return 1 if result["failures"] else 0


BENCH_PRELOAD = ("torch", "flows.sweep", "runtime.runners", *TRACKING_PRELOAD)
COMMANDS = {
    "bench": Command(
        define_bench,
        bench_config,
        lambda args, prepared: run_bench(*prepared, args.json),
        uses_prefect=True,
        preload=BENCH_PRELOAD,
        status=runs_failed,
    ),
    "demo": Command(
        define_demo,
        demo_config,
        lambda args, prepared: run_demo(args, *prepared),
        uses_prefect=True,
        preload=(*BENCH_PRELOAD, "flows.compare"),
        status=runs_failed,
    ),
}
