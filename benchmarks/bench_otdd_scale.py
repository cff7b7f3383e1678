"""OTDD on 100,000 x 100,000 points, d = 768: wall time, peak memory, and the error of the
class-stratified subsample that makes it affordable.

An OTDD between n x n points needs (n, n) cost and kernel arrays: 40 GB each in float32 at
n = 100,000, and about 10^13 flops per Sinkhorn sweep, hours on 2 cores. `orca otdd
--outer sampled` (the default above 5,000 points a side, and stage 2) therefore solves the
problem on a seeded subset of at most `--maxsamples` points per side (default 5,000),
drawn per class in proportion to the class sizes (so the outer problem's class masses are
the full dataset's), with the label distances on at most 500 points per class. This script
measures what that costs and what it gives away:

1. **At scale.** Two labelled clouds of `--n` points each (default 100,000), d = 768, 10
   Gaussian classes (benchmarks/bench_otdd_reference.py's clouds), are written as .npz files
   and given to `orca otdd --inner sinkhorn --outer sampled --json` in a fresh process per
   call, at several `--maxsamples` values: wall time (process start to exit, file loading
   included) and peak RSS (the process's ru_maxrss), and the value, so that one sees where
   the subsampled value settles as the subset grows.
2. **Against exact.** On `--check-n` points per side (default 10,000), where the exact OTDD
   (network simplex on both levels, every point) still runs, the subsampled value at each
   `--maxsamples` is compared with it, and so is the full-data Sinkhorn value: the relative
   errors are printed per cloud kind (`--clouds`: shifted, same, overlap).

    .venv/bin/python benchmarks/bench_otdd_scale.py                  # about 10 minutes
    .venv/bin/python benchmarks/bench_otdd_scale.py --clouds shifted --check-n 5000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_otdd_reference import CLOUDS, make_clouds

DIM = 768


def run_cli(source: Path, target: Path, flags: list[str]) -> dict:
    """One `orca otdd ... --json` in a fresh process: its JSON, wall seconds, peak RSS."""
    command = [sys.executable, "-m", "cli.main", "otdd", str(source), str(target), "--json"]
    # Output goes to files, not pipes: waiting on the process (for its own rusage) with
    # unread pipes would hang once it wrote more than a pipe holds.
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        process = subprocess.Popen(command + flags, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        out, err = out.read(), err.read()
    if process.returncode != 0:
        raise RuntimeError(f"orca otdd failed ({process.returncode}): {err.strip()}")
    result = json.loads(out.strip().splitlines()[-1])
    result.update(wall_s=wall, peak_rss_mib=usage.ru_maxrss / 1024)
    return result


def write_pair(folder: Path, cloud: str, n: int, seed: int) -> tuple[Path, Path]:
    xs, ys, xt, yt = make_clouds(cloud, n, DIM, seed)
    source, target = folder / f"{cloud}-{n}-s.npz", folder / f"{cloud}-{n}-t.npz"
    np.savez(source, X=xs, y=ys)
    np.savez(target, X=xt, y=yt)
    return source, target


def at_scale(folder: Path, cloud: str, n: int, caps: list[int], seed: int) -> None:
    source, target = write_pair(folder, cloud, n, seed)
    print(f"\n## {n:,} x {n:,} points, d = {DIM}, 10 classes, cloud '{cloud}'")
    print("| --maxsamples | value | wall s | peak RSS MiB |")
    print("|---|---|---|---|")
    for cap in caps:
        flags = ["--inner", "sinkhorn", "--outer", "sampled", "--maxsamples", str(cap)]
        result = run_cli(source, target, flags)
        print(
            f"| {cap} | {result['value']:.2f} | {result['wall_s']:.1f} | "
            f"{result['peak_rss_mib']:.0f} |",
            flush=True,
        )


def against_exact(folder: Path, clouds: list[str], n: int, caps: list[int], seed: int) -> None:
    print(f"\n## error against the exact OTDD on {n:,} x {n:,} points, d = {DIM}")
    print("| cloud | computation | value | error vs exact | wall s |")
    print("|---|---|---|---|---|")
    for cloud in clouds:
        source, target = write_pair(folder, cloud, n, seed)
        every = ["--maxsamples", "0"]
        exact = run_cli(source, target, ["--inner", "exact", "--outer", "exact", *every])
        rows = [("exact/exact, every point", exact)]
        for cap in [*caps, 0]:
            flags = ["--inner", "sinkhorn", "--outer", "sampled", "--maxsamples", str(cap)]
            label = f"sinkhorn, {cap} per side" if cap else "sinkhorn, every point"
            if not cap or cap < n:
                rows.append((label, run_cli(source, target, flags)))
        for label, result in rows:
            error = (result["value"] - exact["value"]) / exact["value"]
            print(
                f"| {cloud} | {label} | {result['value']:.2f} | {100 * error:+.2f}% | "
                f"{result['wall_s']:.1f} |",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="points per side at scale")
    parser.add_argument("--caps", default="2500,5000,10000", help="--maxsamples values")
    parser.add_argument("--check-n", type=int, default=10_000, help="points per side vs exact")
    parser.add_argument("--clouds", nargs="*", default=list(CLOUDS), choices=CLOUDS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-scale", action="store_true", help="only the check against exact")
    args = parser.parse_args()
    caps = [int(c) for c in args.caps.split(",")]
    print(f"# OTDD at scale: {os.cpu_count()} CPU(s), class-stratified subsets, epsilon 0.1")
    with tempfile.TemporaryDirectory(prefix="orca-otdd-scale-") as folder:
        if not args.skip_scale:
            at_scale(Path(folder), args.clouds[0], args.n, caps, args.seed)
        against_exact(Path(folder), args.clouds, args.check_n, caps[:2], args.seed)


if __name__ == "__main__":
    main()
