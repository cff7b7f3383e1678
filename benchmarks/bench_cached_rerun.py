"""A fully cached re-run of `orca demo` against its first run, in the same state directory.

The first run computes everything from an empty state directory; the second finds every
pipeline run in the run cache, records it under a new MLflow benchmark run, and redoes the
compare flow (report, artifacts, champion aliases). Both are whole `orca demo --json`
commands in fresh processes, imports and the Prefect server included. The script checks
that the second run reused every run and reported the same numbers, then prints both wall
times and their ratio. Target: re-run <= 5 % of the first run.

    .venv/bin/python benchmarks/bench_cached_rerun.py [--methods M ...] [--seeds N]
        [--workers N] [--keep-reports DIR]     # default: exactly `orca demo`

--keep-reports copies the first run's reports (RESULTS.md, comparison.*) to DIR: the
committed reports/RESULTS.md comes from the first run of this script.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def demo(arguments: list[str], env: dict[str, str]) -> tuple[float, dict]:
    started = time.perf_counter()
    done = subprocess.run(
        [str(BIN / "orca"), "demo", *arguments, "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"orca demo failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return elapsed, json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", nargs="+")
    parser.add_argument("--seeds", type=int)
    parser.add_argument("--workers", type=int)
    parser.add_argument("--keep-reports", help="copy the first run's reports here")
    args = parser.parse_args()
    arguments = []
    for name in ("methods", "seeds", "workers"):
        value = getattr(args, name)
        if value is not None:
            arguments += [f"--{name}", *map(str, value if isinstance(value, list) else [value])]

    scratch = Path(tempfile.mkdtemp(prefix="orca-rerun-"))
    env = {**os.environ, "ORCA_HOME": str(scratch / "state")}
    for var in ("PREFECT_API_URL", "PREFECT_HOME", "MLFLOW_TRACKING_URI"):
        env.pop(var, None)
    arguments += ["--reports-dir", str(scratch / "reports")]
    try:
        first_wall, first = demo(arguments, env)
        if args.keep_reports:
            shutil.copytree(scratch / "reports", args.keep_reports, dirs_exist_ok=True)
        second_wall, second = demo(arguments, env)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    def table(out: dict) -> dict:
        return {(r["task"], r["method"]): (r["mean"], r["n_seeds"]) for r in out["rows"]}

    same = table(first) == table(second)
    print(
        f"runs: first {first['runs']} ({first['reused']} reused), re-run {second['runs']} "
        f"({second['reused']} reused); failures {first['failures'] + second['failures']}"
    )
    print(f"machine: {os.cpu_count()} cores; orca demo {' '.join(arguments[:-2])}")
    print(f"first run (everything computed)   {first_wall:8.1f} s")
    print(f"re-run (everything cached)        {second_wall:8.1f} s")
    print(f"re-run / first run                {second_wall / first_wall:8.1%}   target <= 5%")
    print(f"same comparison table both times: {same} ({len(first['rows'])} rows)")
    if not same or second["reused"] != second["runs"]:
        sys.exit("the re-run recomputed some runs or reported different numbers")


if __name__ == "__main__":
    main()
