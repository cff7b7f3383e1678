"""Orchestration overhead of the sweep flow (Prefect + MLflow) against direct calls.

Both sides make the same runs (a SweepConfig: tasks x methods x seeds) from an empty
state directory, in fresh subprocesses with the same torch thread count:

- "direct" calls the orca.stages functions in a plain loop: ingest once per task, proxy
  features once per backbone, then align -> refine -> evaluate per run. It is the
  computation alone: no Prefect, no MLflow, no cache keys.
- "flow" runs `orca bench` (the sweep flow: Prefect's ephemeral API, cached tasks, an
  MLflow parent run and a child run per task x method x seed, the stage logs and metrics).
  Its time is the whole command, imports and the Prefect server included.

Overhead = flow / direct - 1. Target: <= 10 %. With `--api running`, the state directory's
Prefect server (runtime/state_server.py) is started before the flow's clock starts, as when
a server is already up (another command on the same state, or a work pool's server): the
flow's time then leaves out the server's start, but keeps everything else.

It prints where the flow side's time went, from its Prefect database (before the
sweep flow run, each stage's task runs, the rest of the flow run, after it) next to the
direct side's, and checks that both sides got the same test metric for every run.

The script also prints the direct side's per-run stage times, which is what sizes the
embedded demo (issue 5: about 10 minutes on 2 cores for the whole `orca demo`), and the
test metric of each run on both sides (they should agree: same seeds, same code).

    .venv/bin/python benchmarks/bench_orchestration.py [--suite demo] [--tasks T ...]
        [--methods orca ...] [--seeds 1] [--threads 1] [--api started|running]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

BIN = Path(sys.executable).parent


def direct(config_json: str, out_root: str) -> dict:
    """The sweep's runs as plain function calls (runs in a subprocess)."""
    started = time.perf_counter()
    from runtime.state import activate

    activate(Path(out_root) / "state")
    from orca.config.sweep import SweepConfig
    from orca.stages import align, evaluate, ingest, proxy, refine

    config = SweepConfig(**json.loads(config_json))
    root = Path(out_root)
    datasets: dict[tuple, dict] = {}
    proxies: dict[tuple, dict] = {}
    runs = []
    for index, run in enumerate(config.runs()):
        times: dict[str, float] = {}
        clock = time.perf_counter()
        data_key = (run.task, run.split_seed, run.train_fraction)
        if data_key not in datasets:
            datasets[data_key] = ingest.ingest(
                run.task, root / f"ingest{len(datasets)}", run.split_seed, run.train_fraction
            )
        times["ingest"], clock = time.perf_counter() - clock, time.perf_counter()
        proxy_key = (run.backbone, json.dumps(run.proxy.to_dict(), sort_keys=True))
        if proxy_key not in proxies:
            proxies[proxy_key] = proxy.extract_proxy(
                run.backbone, run.proxy, root / f"proxy{len(proxies)}"
            )
        times["proxy"], clock = time.perf_counter() - clock, time.perf_counter()
        dataset = datasets[data_key]
        embedder = align.align(
            run.task,
            run.backbone,
            dataset,
            proxies[proxy_key],
            run.align,
            run.align_epochs,
            root / f"align{index}",
            run.seed,
            pretrained=run.pretrained_body,
        )
        times["align"], clock = time.perf_counter() - clock, time.perf_counter()
        model = refine.refine(
            run.task,
            run.backbone,
            dataset,
            embedder,
            run.refine,
            root / f"refine{index}",
            run.seed,
            mode=run.refine_mode,
            pretrained=run.pretrained_body,
        )
        times["refine"], clock = time.perf_counter() - clock, time.perf_counter()
        result = evaluate.evaluate(run.task, run.backbone, dataset, model, run.seed)
        times["evaluate"] = time.perf_counter() - clock
        runs.append(
            {
                "task": run.task,
                "method": run.method,
                "seed": run.seed,
                "value": result["value"],
                "times": times,
            }
        )
    return {"runs": runs, "compute_seconds": time.perf_counter() - started}


def run_process(command: list[str], env: dict[str, str]) -> tuple[float, dict]:
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{' '.join(command[:4])} ... failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return elapsed, json.loads(done.stdout.strip().splitlines()[-1])


STAGES = ("ingest", "proxy", "align", "refine", "evaluate")


def _utc(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()


def flow_breakdown(prefect_db: Path, started: float, ended: float) -> dict[str, float]:
    """Where the flow side's wall time went, from its Prefect database: before and after
    the sweep flow run, and inside it the stage task runs by stage (their
    start-to-end times) and everything else (the runs' flow runs, cache records, MLflow)."""
    with sqlite3.connect(prefect_db) as db:
        flow_runs = db.execute(
            "SELECT flow_run.start_time, flow_run.end_time FROM flow_run JOIN flow "
            "ON flow.id = flow_run.flow_id WHERE flow.name = 'orca-sweep'"
        ).fetchall()
        tasks = db.execute("SELECT name, start_time, end_time FROM task_run").fetchall()
    (flow_start, flow_end), *_ = flow_runs
    times = {"before the flow run": _utc(flow_start) - started}
    for stage in STAGES:
        times[stage] = sum(
            _utc(end) - _utc(start)
            for name, start, end in tasks
            if start and end and name.rsplit("-", 1)[0] == stage
        )
    inside = _utc(flow_end) - _utc(flow_start)
    times["between the stages"] = inside - sum(times[stage] for stage in STAGES)
    times["after the flow run"] = ended - _utc(flow_end)
    return times


HOLD_SERVER = """
from runtime.state import activate
activate()
from runtime.state_server import Connection
print(Connection.wait(), flush=True)
import sys
sys.stdin.read()
"""


def hold_server(env: dict[str, str]) -> subprocess.Popen[str]:
    """Start the state's Prefect server and keep it up (until killed)."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_SERVER],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None
    print(f"Prefect server up at {holder.stdout.readline().strip()}", file=sys.stderr)
    return holder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--suite", default="demo")
    parser.add_argument("--tasks", nargs="*", default=[])
    parser.add_argument("--methods", nargs="+", default=["orca", "no-align", "fpt", "scratch"])
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="torch threads on both sides")
    parser.add_argument(
        "--api",
        choices=("started", "running"),
        default="started",
        help="started: the command starts the Prefect server (default); running: it is up",
    )
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        import torch

        torch.set_num_threads(args.threads)
        print(json.dumps(direct(*args.worker)))
        return

    config = {
        "suite": None if args.tasks else args.suite,
        "tasks": args.tasks,
        "methods": args.methods,
        "seeds": args.seeds,
    }
    scratch = Path(tempfile.mkdtemp(prefix="orca-orchestration-"))
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    for var in ("PREFECT_API_URL", "PREFECT_HOME", "MLFLOW_TRACKING_URI", "ORCA_HOME"):
        env.pop(var, None)
    try:
        direct_wall, direct_out = run_process(
            [
                sys.executable,
                __file__,
                "--threads",
                str(args.threads),
                "--worker",
                json.dumps(config),
                str(scratch / "direct"),
            ],
            env,
        )
        selection = ["--tasks", *args.tasks] if args.tasks else ["--suite", args.suite]
        flow_env = {**env, "ORCA_HOME": str(scratch / "flow")}
        holder = hold_server(flow_env) if args.api == "running" else None
        flow_started = time.time()
        flow_wall, flow_out = run_process(
            [
                str(BIN / "orca"),
                "bench",
                *selection,
                "--methods",
                *args.methods,
                "--seeds",
                str(args.seeds),
                "--threads",
                str(args.threads),
                "--json",
            ],
            flow_env,
        )
        breakdown = flow_breakdown(
            scratch / "flow" / "prefect" / "prefect.db", flow_started, flow_started + flow_wall
        )
        if holder is not None:
            holder.kill()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    server = "already running" if args.api == "running" else "started by the command"
    print(f"Prefect server: {server}")
    print(
        f"machine: {os.cpu_count()} cores, torch threads {args.threads}, "
        f"load average before {os.getloadavg()[0]:.2f}"
    )
    print(f"{'task':<14} {'method':<10} seed {'align':>6} {'refine':>7} {'eval':>6} {'value':>9}")
    for run in direct_out["runs"]:
        t = run["times"]
        print(
            f"{run['task']:<14} {run['method']:<10} {run['seed']:>4} {t['align']:6.1f} "
            f"{t['refine']:7.1f} {t['evaluate']:6.1f} {run['value']:9.4f}"
        )
    runs = len(direct_out["runs"])
    print(
        f"runs: {runs} direct, {flow_out['runs']} through the flow; flow failures: "
        f"{flow_out['failures']}"
    )
    direct_times = {
        "before the flow run": direct_wall - direct_out["compute_seconds"],
        **{stage: sum(run["times"][stage] for run in direct_out["runs"]) for stage in STAGES},
    }
    print(f"{'where the time went':<22} {'direct':>8} {'flow':>8} {'flow-direct':>12}")
    for part, flow_seconds in breakdown.items():
        direct_seconds = direct_times.get(part, 0.0)
        print(
            f"{part:<22} {direct_seconds:8.1f} {flow_seconds:8.1f} "
            f"{flow_seconds - direct_seconds:+12.1f}"
        )
    flow_values = {(r["task"], r["method"], r["seed"]): r["value"] for r in flow_out["results"]}
    differing = [
        (run["task"], run["method"], run["seed"])
        for run in direct_out["runs"]
        if flow_values.get((run["task"], run["method"], run["seed"])) != run["value"]
    ]
    print(f"test metrics equal on both sides: {not differing} {differing or ''}")
    print(f"direct (process, imports included)  {direct_wall:8.1f} s")
    print(f"direct compute alone                {direct_out['compute_seconds']:8.1f} s")
    print(f"sweep flow (whole orca bench)     {flow_wall:8.1f} s")
    print(f"overhead flow / direct - 1          {flow_wall / direct_wall - 1:8.1%}   target <= 10%")
    print(
        f"per run: direct {direct_wall / runs:.2f} s, flow {flow_wall / runs:.2f} s, "
        f"difference {(flow_wall - direct_wall) / runs:.2f} s"
    )


if __name__ == "__main__":
    main()
