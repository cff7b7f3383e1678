"""Wall time of `orca run gunpoint`: cold (fresh state directory) and warm (all cached).

Targets on 2 cores: cold < 180 s, warm < 15 s. As references measured in the same run, it
also times (a) the bare imports the CLI needs and (b) an empty Prefect flow in a fresh
process, which pays the same ephemeral-server start and stop as every `orca run`. Their
sum bounds the warm run from below; the script prints the ratios against both.

    .venv/bin/python benchmarks/bench_run_gunpoint.py [--keep STATE_DIR]
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


def timed(command: list[str], env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return elapsed, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keep", help="state directory to use and keep (default: a temp dir)")
    args = parser.parse_args()
    state = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="orca-bench-"))
    shutil.rmtree(state, ignore_errors=True)
    env = {**os.environ, "ORCA_HOME": str(state)}
    for var in ("PREFECT_API_URL", "PREFECT_HOME", "MLFLOW_TRACKING_URI"):
        env.pop(var, None)

    imports, _ = timed(
        [
            sys.executable,
            "-c",
            "from runtime.state import activate; activate(); "
            "import torch, transformers, prefect, mlflow",
        ],
        env,
    )
    empty_flow = (
        "from runtime.state import activate; activate(); from prefect import flow; "
        "flow(name='empty')(lambda: None)()"
    )
    timed([sys.executable, "-c", empty_flow], env)  # creates Prefect's database once
    empty, _ = timed([sys.executable, "-c", empty_flow], env)
    command = [str(BIN / "orca"), "run", "gunpoint", "--json"]
    cold, cold_out = timed(command, env)
    warm, warm_out = timed(command, env)
    cold_result = json.loads(cold_out.strip().splitlines()[-1])
    warm_result = json.loads(warm_out.strip().splitlines()[-1])

    print(f"machine: {os.cpu_count()} cores, torch threads default")
    print(f"imports (reference)  {imports:7.1f} s")
    print(f"orca run cold        {cold:7.1f} s   target < 180 s   stages {cold_result['stages']}")
    print(f"orca run warm        {warm:7.1f} s   target <  15 s   stages {warm_result['stages']}")
    print(f"warm / cold          {warm / cold:7.3f}")
    print(f"empty Prefect flow (reference) {empty:5.1f} s")
    print(f"warm / imports       {warm / imports:7.2f}")
    print(f"warm / empty flow    {warm / empty:7.2f}")
    print(
        f"test {cold_result['metric']}: cold {cold_result['value']:.3f}, "
        f"warm {warm_result['value']:.3f}"
    )
    if not args.keep:
        shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main()
