"""Soak: the demo suite several times in a row on one state directory.

Each round runs `orca demo --json` as a fresh process on the same state directory, with
Prefect's cache refresh on (PREFECT_TASKS_REFRESH_CACHE=true), so every round recomputes
every stage, as a weekly refresh with changed code would, instead of reading round 1's
records. For each round it prints:

- the wall time and the peak resident memory, sampled every 0.5 s: of the whole process
  tree, and of its largest single process (the command, a worker, the Prefect server);
- how much each part of the state directory grew. Recomputed stages overwrite their
  content-addressed directories, so only the records of the new runs should add bytes:
  the MLflow and Prefect databases, MLflow's run artifacts, and logs. Stage artifacts and
  cache records stay the same size, and no lock or temporary file is left behind;
- whether the test metrics are identical to round 1's (same seeds, CPU): the demo suite
  run again with caching disabled is deterministic.

    .venv/bin/python benchmarks/soak_demo.py [--rounds 3] [--seeds 3] [--workers 2]
        [--state-dir DIR] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

BIN = Path(sys.executable).parent
PARTS = ("artifacts", "results", "mlartifacts", "mlflow.db", "prefect", "data", "locks")


def size_of(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def state_sizes(state: Path) -> dict[str, int]:
    sizes = {part: size_of(state / part) if (state / part).exists() else 0 for part in PARTS}
    sizes["other"] = size_of(state) - sum(sizes.values())
    return sizes


def leftovers(state: Path) -> list[str]:
    """Lock files and temporary files left in the state directory."""
    found = [str(p) for p in (state / "locks").glob("*")] if (state / "locks").exists() else []
    found += [str(p) for p in state.rglob("*.tmp-*")]
    return found


class TreeMemory:
    """Peak RSS of a process and its descendants, sampled from /proc: `peak` of their total,
    `largest` of any one of them."""

    def __init__(self, pid: int, every: float = 0.5):
        self.pid, self.every, self.peak, self.largest = pid, every, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _children(self) -> dict[int, list[int]]:
        tree: dict[int, list[int]] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                tree.setdefault(int(fields[1]), []).append(int(entry.name))
        return tree

    def _rss(self, pid: int) -> int:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 0

    def _run(self) -> None:
        while not self._stop.is_set():
            tree, pending, total = self._children(), [self.pid], 0
            while pending:
                pid = pending.pop()
                rss = self._rss(pid)
                total += rss
                self.largest = max(self.largest, rss)
                pending.extend(tree.get(pid, []))
            self.peak = max(self.peak, total)
            self._stop.wait(self.every)


def run_round(args: argparse.Namespace, state: Path, reports: Path) -> dict:
    env = {**os.environ, "ORCA_HOME": str(state), "PREFECT_TASKS_REFRESH_CACHE": "true"}
    for name in ("PREFECT_API_URL", "PREFECT_HOME", "MLFLOW_TRACKING_URI"):
        env.pop(name, None)
    command = [str(BIN / "orca"), "demo", "--seeds", str(args.seeds), "--workers"]
    command += [str(args.workers), "--reports-dir", str(reports), "--json"]
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    with TreeMemory(process.pid) as memory:
        out, err = process.communicate()
    wall = time.perf_counter() - started
    if process.returncode != 0:
        sys.exit(f"orca demo failed ({process.returncode}):\n{err.decode()[-3000:]}")
    summary = json.loads(out.decode().strip().splitlines()[-1])
    return {
        "wall": wall,
        "largest_process": memory.largest,
        "tree_peak": memory.peak,
        "summary": summary,
    }


def metrics_of(summary: dict) -> dict[tuple, tuple[float, float]]:
    """(task, method) -> (mean, std) of the test metric over the seeds."""
    return {(r["task"], r["method"]): (r["mean"], r["std"]) for r in summary["rows"]}


def mib(n: int) -> str:
    return f"{n / 2**20:9.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--state-dir", help="default: a new temporary directory")
    parser.add_argument("--keep", action="store_true", help="keep the temporary state")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="orca-soak-"))
    state = Path(args.state_dir).resolve() if args.state_dir else scratch / "state"
    print(f"state directory: {state}; {os.cpu_count()} cores; {args.rounds} rounds of "
          f"orca demo --seeds {args.seeds} --workers {args.workers}, cache refresh on")  # fmt: skip
    rounds, growth, first = [], [], None
    try:
        for index in range(args.rounds):
            sizes = state_sizes(state) if state.exists() else dict.fromkeys((*PARTS, "other"), 0)
            result = run_round(args, state, scratch / f"reports-{index}")
            after = state_sizes(state)
            growth.append({part: after[part] - sizes[part] for part in after})
            rounds.append(result)
            metrics = metrics_of(result["summary"])
            first = first or metrics
            same = metrics == first
            pairs = [(metrics.get(key, (0.0, 0.0)), first[key]) for key in first]
            worst = max(abs(a - b) for now, then in pairs for a, b in zip(now, then, strict=True))
            print(
                f"round {index + 1}: {result['wall']:.0f} s, peak RSS {mib(result['tree_peak'])} "
                f"MiB (tree), {mib(result['largest_process'])} MiB (largest process); "
                f"{result['summary']['runs']} runs, {len(result['summary']['failures'])} failed; "
                f"metrics {'identical to round 1' if same else f'DIFFER (max {worst:.3g})'}"
            )
        print(f"\nstate growth per round, MiB\n{'part':<12}" + "".join(
            f"{f'round {i + 1}':>10}" for i in range(len(growth))))  # fmt: skip
        for part in (*PARTS, "other"):
            print(f"{part:<12}" + "".join(f"{mib(g[part]):>10}" for g in growth))
        print(f"{'total':<12}" + "".join(f"{mib(sum(g.values())):>10}" for g in growth))
        left = leftovers(state)
        print(f"\nlocks or temporary files left: {len(left)}" + "".join(f"\n  {p}" for p in left))
    finally:
        if not args.keep and not args.state_dir:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
