"""`orca bench`, `orca compare`, `orca ablations` and `orca demo`: the comparison commands.

    orca bench (--suite NAME | --tasks T ... | --task-file F ...) [--methods M ...]
               [--seeds N] [--backbone B] [--set S.K=V]... [--workers N] [--threads N]
               [--runner local|dask] [--dask-address ADDRESS] [--json]
    orca compare [--benchmark-run ID] [--reports-dir DIR] [--json]
    orca ablations [--task T] [--image-task T] [--seeds N] [--set S.K=V]... [--json]
    orca demo [--seeds N] [--methods M ...] [--workers N] [--threads N] [--runner R] [--json]

--workers runs that many pipeline runs at once (worker processes, see runtime/runners.py);
--threads sets torch's threads per process (default: the cores divided among the workers,
so that the runs do not oversubscribe the CPU). --runner picks where the runs go (default
`local`: this process, or worker processes; `dask`: a Dask LocalCluster of --workers
processes, or the scheduler at --dask-address / $ORCA_DASK_ADDRESS); see runtime/runners.py.

With --json the last stdout line is one JSON object; for compare it has a `rows` list.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import uuid
from typing import Any

from orca.stopping import shared_stop_file
from orca.suites import SUITES
from runtime.runners import TASK_RUNNERS, RunnerOptions
from runtime.state import StateDir

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
DASK_ADDRESS_ENV = "ORCA_DASK_ADDRESS"


def _add_parallelism(parser, workers: int) -> None:
    parser.add_argument(
        "--workers", type=int, default=workers, help=f"pipeline runs at once (default {workers})"
    )
    parser.add_argument(
        "--threads", type=int, help="torch threads (default: CPU cores / workers, at least 1)"
    )
    parser.add_argument(
        "--runner",
        default="local",
        help=f"where the runs go: {', '.join(TASK_RUNNERS.names())} (default local)",
    )
    parser.add_argument(
        "--dask-address",
        default=os.environ.get(DASK_ADDRESS_ENV),
        help=f"an existing Dask scheduler for --runner dask (default ${DASK_ADDRESS_ENV}; "
        "unset: a local cluster of --workers processes)",
    )


def check_parallelism(args: argparse.Namespace) -> RunnerOptions:
    """--workers and --threads must be positive integers, --runner a registered runner;
    returns the runner options they make."""
    for name in ("workers", "threads"):
        value = getattr(args, name, None)
        if value is not None and value < 1:
            raise ValueError(f"--{name} must be an integer >= 1, got {value}")
    return runner_options(args)


def runner_options(args: argparse.Namespace) -> RunnerOptions:
    """The validated RunnerOptions of --runner, --workers, --threads and --dask-address."""
    return RunnerOptions(
        runner=args.runner,
        workers=args.workers,
        threads=torch_threads(args.workers, args.threads),
        dask_address=args.dask_address if args.runner == "dask" else None,
    )


def torch_threads(workers: int, threads: int | None) -> int:
    """The torch thread count for `workers` concurrent runs: `threads`, or the CPU cores
    shared out among the workers."""
    return threads or max(1, (os.cpu_count() or 1) // workers)


def add_parsers(commands, add_overrides) -> None:
    bench = commands.add_parser("bench", help="tasks x methods x seeds through the pipeline")
    bench.add_argument("--suite", help=f"a task suite: {', '.join(SUITES.names())}")
    bench.add_argument("--tasks", nargs="+", default=[], metavar="TASK")
    bench.add_argument("--task-file", dest="task_files", action="append", default=[])
    bench.add_argument(
        "--allow-outside",
        action="store_true",
        help="let task files' split files lie outside their folders",
    )
    bench.add_argument(
        "--methods",
        nargs="+",
        metavar="METHOD",
        help="default: all ten (ORCA, its variants and baselines, knn, linear, forest)",
    )
    bench.add_argument("--seeds", type=int, default=3)
    bench.add_argument("--backbone", help="body for every task (default: each task's)")
    _add_parallelism(bench, 1)
    add_overrides(bench)
    bench.add_argument("--json", action="store_true")

    compare = commands.add_parser("compare", help="the comparison report of a benchmark run")
    compare.add_argument("--benchmark-run", help="MLflow run id (default: the latest)")
    compare.add_argument("--reports-dir", default="reports")
    compare.add_argument("--json", action="store_true")

    ablations = commands.add_parser("ablations", help="the paper's ablations, with a report")
    ablations.add_argument("--task", default="gunpoint")
    ablations.add_argument("--image-task", default="digits")
    ablations.add_argument("--seeds", type=int, default=2)
    ablations.add_argument("--reports-dir", default="reports")
    add_overrides(ablations)
    ablations.add_argument("--json", action="store_true")

    demo = commands.add_parser(
        "demo", help="bench + compare on the embedded suite (packaged data and weights)"
    )
    demo.add_argument("--seeds", type=int, default=DEMO_SEEDS)
    demo.add_argument(
        "--methods", nargs="+", metavar="METHOD", help=f"default: {' '.join(DEMO_METHODS)}"
    )
    demo.add_argument("--reports-dir", default="reports")
    _add_parallelism(demo, DEMO_WORKERS)
    demo.add_argument("--json", action="store_true")


def sweep_config(args: argparse.Namespace, overrides: dict[str, Any]):
    from orca.config.sweep import DEFAULT_METHODS, SweepConfig

    return SweepConfig(
        suite=args.suite,
        tasks=tuple(args.tasks),
        task_files=tuple(args.task_files),
        allow_outside=args.allow_outside,
        methods=tuple(args.methods or DEFAULT_METHODS),
        seeds=args.seeds,
        backbone=args.backbone,
        overrides=overrides,
    )


def run_bench(config, runner: RunnerOptions, as_json: bool) -> dict[str, Any]:
    """The benchmark flow on the task runner `runner` names (runtime/runners.py)."""
    import torch

    from flows.sweep import sweep
    from runtime.prefect_api import shared_prefect_api
    from runtime.runners import open_task_runner

    torch.set_num_threads(runner.threads)
    started = time.perf_counter()
    # A stop (SIGTERM, SIGINT) in this process reaches the runs in worker processes too.
    stop_file = StateDir.from_env().root / "stops" / f"bench-{os.getpid()}-{uuid.uuid4().hex}"
    with shared_stop_file(stop_file), shared_prefect_api(), open_task_runner(runner) as runs:
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
    if as_json:
        print(json.dumps(summary))
    else:
        print(
            f"benchmark {summary['sweep_run_id']}: {summary['runs']} runs, "
            f"{len(summary['failures'])} failed, {summary['wall_seconds']} s"
        )
        for failure in summary["failures"]:
            print(f"  failed: {failure}")
    return summary


def sweep_to_compare(args: argparse.Namespace) -> str:
    """The benchmark run `orca compare` reports on (the latest by default), checked before
    the compare flow starts: no benchmark run yet, or one with no finished runs, is a
    user error (one line, exit status 2), not a failed flow with a traceback."""
    from orca.errors import NoResultsError
    from tasks import sweep_tracking

    run_id = args.benchmark_run or sweep_tracking.latest_sweep_run_id()
    if not sweep_tracking.sweep_results.fn(run_id):
        raise NoResultsError(f"benchmark run {run_id} has no finished pipeline runs")
    return run_id


COMPARE_JSON_KEYS = ("sweep_run_id", "rows", "report", "champions")


def run_compare(
    benchmark_run: str | None, reports_dir: str, as_json: bool, quiet: bool = False
) -> dict[str, Any]:
    from flows.compare import compare

    out = compare(benchmark_run, reports_dir=reports_dir)
    if quiet:
        return out
    if as_json:
        print(json.dumps({k: out[k] for k in COMPARE_JSON_KEYS}))
    else:
        print(out["table"])
        print(f"report: {out['report']}")
    return out


def run_demo(args: argparse.Namespace, config) -> dict[str, Any]:
    """bench + compare on the embedded suite, then reports/RESULTS.md with the machine, the
    date and the wall time; prints the table and the report's path (or one JSON line)."""
    from datetime import datetime, timezone
    from pathlib import Path

    import torch

    from orca.reporting.results import machine_description, write_results

    started = time.perf_counter()
    bench = run_bench(config, runner_options(args), as_json=False)
    out = run_compare(bench["sweep_run_id"], args.reports_dir, args.json, quiet=True)
    wall = time.perf_counter() - started
    methods = " ".join(config.methods)
    context = {
        "command": f"orca demo --seeds {config.seeds} --methods {methods} --workers {args.workers}"
        + ("" if args.runner == "local" else f" --runner {args.runner}"),
        "machine": f"{machine_description()}; torch {torch.__version__}, "
        f"{torch.get_num_threads()} torch thread(s) per run, {args.workers} run(s) at once",
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "wall time": f"{wall:.0f} s ({bench['wall_seconds']:.0f} s benchmark, "
        f"{wall - bench['wall_seconds']:.0f} s compare)",
        "runs": f"{bench['runs']} finished ({bench['reused']} reused from the run cache), "
        f"{len(bench['failures'])} failed",
    }
    results = write_results(Path(args.reports_dir) / "RESULTS.md", out["report"], context)
    if args.json:
        summary = {k: out[k] for k in COMPARE_JSON_KEYS}
        counts = {k: bench[k] for k in ("runs", "reused", "failures")}
        print(
            json.dumps(
                {**summary, **counts, "results": str(results), "wall_seconds": round(wall, 1)}
            )
        )
    else:
        print(out["table"])
        print(f"report: {results} (and {out['report']})")
    return {**out, "failures": bench["failures"]}


def run_ablations(args: argparse.Namespace, overrides: dict[str, Any]) -> dict[str, Any]:
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
