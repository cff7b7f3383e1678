"""`orca bench`, `orca compare`, `orca ablations` and `orca demo`: the comparison commands.

    orca bench (--suite NAME | --tasks T ... | --task-file F ...) [--methods M ...]
               [--seeds N] [--backbone B] [--set S.K=V]... [--workers N] [--json]
    orca compare [--benchmark-run ID] [--reports-dir DIR] [--json]
    orca ablations [--task T] [--image-task T] [--seeds N] [--set S.K=V]... [--json]
    orca demo [--seeds N] [--json]

With --json the last stdout line is one JSON object; for compare it has a `rows` list.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from orca.suites import SUITES

DEMO_SUITE = "demo"
DEMO_SEEDS = 3


def add_parsers(commands, add_overrides) -> None:
    bench = commands.add_parser("bench", help="tasks x methods x seeds through the pipeline")
    bench.add_argument("--suite", help=f"a task suite: {', '.join(SUITES.names())}")
    bench.add_argument("--tasks", nargs="+", default=[], metavar="TASK")
    bench.add_argument("--task-file", dest="task_files", action="append", default=[])
    bench.add_argument("--methods", nargs="+", metavar="METHOD", help="default: all seven")
    bench.add_argument("--seeds", type=int, default=3)
    bench.add_argument("--backbone", help="body for every task (default: each task's)")
    bench.add_argument("--workers", type=int, default=1, help="pipeline runs at once (threads)")
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
    demo.add_argument("--methods", nargs="+", metavar="METHOD")
    demo.add_argument("--reports-dir", default="reports")
    demo.add_argument("--json", action="store_true")


def benchmark_config(args: argparse.Namespace, overrides: dict[str, Any]):
    from orca.benchmark_config import DEFAULT_METHODS, BenchmarkConfig

    return BenchmarkConfig(
        suite=args.suite,
        tasks=tuple(args.tasks),
        task_files=tuple(args.task_files),
        methods=tuple(args.methods or DEFAULT_METHODS),
        seeds=args.seeds,
        backbone=args.backbone,
        overrides=overrides,
    )


def run_bench(config, workers: int, as_json: bool) -> dict[str, Any]:
    from prefect.task_runners import ThreadPoolTaskRunner

    from flows.benchmark import benchmark

    started = time.perf_counter()
    flow = benchmark.with_options(task_runner=ThreadPoolTaskRunner(max_workers=workers))
    out = flow(config)
    summary = {
        "benchmark_run_id": out["benchmark_run_id"],
        "runs": len(out["results"]),
        "failures": out["failures"],
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    if as_json:
        print(json.dumps(summary))
    else:
        print(
            f"benchmark {summary['benchmark_run_id']}: {summary['runs']} runs, "
            f"{len(summary['failures'])} failed, {summary['wall_seconds']} s"
        )
        for failure in summary["failures"]:
            print(f"  failed: {failure}")
    return summary


def run_compare(benchmark_run: str | None, reports_dir: str, as_json: bool) -> dict[str, Any]:
    from flows.compare import compare

    out = compare(benchmark_run, reports_dir=reports_dir)
    if as_json:
        print(json.dumps({k: out[k] for k in ("benchmark_run_id", "rows", "report", "champions")}))
    else:
        print(out["table"])
        print(f"report: {out['report']}")
    return out


def run_ablations(args: argparse.Namespace, overrides: dict[str, Any]) -> dict[str, Any]:
    from flows.ablations import ablations
    from orca.ablation_config import AblationConfig

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
