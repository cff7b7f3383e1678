"""Memory of Arrow split storage on a split larger than the batches: O(batch), not O(split).

Generates a split of at least --gigabytes (default 2.1 GB) of float32 inputs, writes it
with orca.data.arrow_io.write_split_batches (streamed, two passes), then iterates it with
iter_batches (memory-mapped, batched). Each phase runs in a fresh subprocess and reports
its wall time and peak RSS. References measured in the same run:
    imports     a process that only imports the same modules (the RSS floor)
    read_split  reading the whole split into memory at once (skip with --skip-full-read)

    .venv/bin/python benchmarks/bench_arrow_stream.py [--gigabytes 2.1] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _batches(rows: int, shape: tuple[int, ...], batch: int, seed: int):
    def make():
        rng = np.random.default_rng(seed)
        for start in range(0, rows, batch):
            n = min(batch, rows - start)
            x = rng.standard_normal((n, *shape), dtype=np.float32)
            yield x, np.arange(start, start + n, dtype=np.int64) % 10

    return make


class _AnonymousPeak:
    """Peak anonymous RSS (the process's own memory, not file pages mapped from the page
    cache, which count in RSS but belong to the kernel's cache), sampled per batch."""

    def __init__(self) -> None:
        self.peak_kib = 0

    def sample(self) -> None:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("RssAnon:"):
                    self.peak_kib = max(self.peak_kib, int(line.split()[1]))


def _phase(name: str, path: str, rows: int, shape: tuple[int, ...], batch: int) -> dict:
    from orca.data.arrow_io import iter_batches, read_split, write_split_batches

    started = time.perf_counter()
    anonymous = _AnonymousPeak()
    result: dict = {}
    if name == "write":
        make = _batches(rows, shape, batch, seed=0)

        def sampled():
            for item in make():
                anonymous.sample()
                yield item

        result["fingerprint"] = write_split_batches(path, sampled, {"bench": "arrow"})
    elif name == "iterate":
        seen, checksum = 0, 0.0
        for x, y in iter_batches(path, batch):
            seen += len(x)
            checksum += float(x[:, 0].sum()) + float(y.sum())
            anonymous.sample()
        result.update(rows=seen, checksum=checksum)
    elif name == "read_split":
        split = read_split(path)
        anonymous.sample()
        result.update(rows=len(split.x))
    result["seconds"] = time.perf_counter() - started
    anonymous.sample()
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["peak_anon_mib"] = anonymous.peak_kib / 1024
    return result


def _run_phase(name: str, path: Path, rows: int, shape, batch: int) -> dict:
    command = [
        sys.executable,
        __file__,
        "--phase",
        name,
        "--path",
        str(path),
        "--rows",
        str(rows),
        "--shape",
        ",".join(map(str, shape)),
        "--batch-size",
        str(batch),
    ]
    out = subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gigabytes", type=float, default=2.1)
    parser.add_argument("--shape", default="3,64,64")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--dir", default=None, help="where to write the split (default: tmp)")
    parser.add_argument("--skip-full-read", action="store_true")
    parser.add_argument("--quick", action="store_true", help="0.2 GB, for a smoke run")
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--rows", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    shape = tuple(int(v) for v in args.shape.split(","))
    if args.phase:
        if args.phase == "imports":
            import orca.data.arrow_io  # noqa: F401

            usage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            anonymous = _AnonymousPeak()
            anonymous.sample()
            peak_anon = anonymous.peak_kib / 1024
            print(json.dumps({"seconds": 0.0, "peak_rss_mib": usage, "peak_anon_mib": peak_anon}))
            return
        print(json.dumps(_phase(args.phase, args.path, args.rows, shape, args.batch_size)))
        return

    gigabytes = 0.2 if args.quick else args.gigabytes
    row_bytes = 4 * int(np.prod(shape))
    rows = int(np.ceil(gigabytes * 1e9 / row_bytes))
    directory = Path(args.dir or tempfile.mkdtemp(prefix="orca-bench-arrow-"))
    path = directory / "big.arrow"
    print(f"split: {rows} rows x {shape} float32 = {rows * row_bytes / 1e9:.2f} GB of inputs")
    print(
        f"batch size {args.batch_size}; one batch = {args.batch_size * row_bytes / 2**20:.1f} MiB"
    )
    try:
        results = {"imports": _run_phase("imports", path, rows, shape, args.batch_size)}
        results["write"] = _run_phase("write", path, rows, shape, args.batch_size)
        file_gb = path.stat().st_size / 1e9
        results["iterate"] = _run_phase("iterate", path, rows, shape, args.batch_size)
        if not args.skip_full_read:
            results["read_split"] = _run_phase("read_split", path, rows, shape, args.batch_size)
    finally:
        if path.exists():
            os.remove(path)
        if not args.dir:
            directory.rmdir()
    floor = results["imports"]["peak_anon_mib"]
    split_mib = file_gb * 1e9 / 2**20
    print(f"file size: {file_gb:.2f} GB ({split_mib:.0f} MiB)")
    print("peak RSS counts mapped file pages (page cache); anonymous RSS is the process's own")
    header = f"{'phase':<12}{'seconds':>9}{'GB/s':>7}{'peak RSS MiB':>14}{'peak anon MiB':>15}"
    print(header + f"{'anon above imports':>20}")
    for name, result in results.items():
        rate = file_gb / result["seconds"] if result["seconds"] > 0 else float("nan")
        print(
            f"{name:<12}{result['seconds']:>9.2f}{rate:>7.2f}{result['peak_rss_mib']:>14.0f}"
            f"{result['peak_anon_mib']:>15.0f}{result['peak_anon_mib'] - floor:>20.0f}"
        )
    for name in ("write", "iterate"):
        extra = results[name]["peak_anon_mib"] - floor
        print(f"{name}: own memory above imports {extra:.0f} MiB = {extra / split_mib:.3f} x split")
    if "read_split" in results:
        full = results["read_split"]["peak_anon_mib"] - floor
        extra = max(results["iterate"]["peak_anon_mib"] - floor, 1)
        print(f"read_split / iterate own-memory ratio: {full / extra:.1f}x")


if __name__ == "__main__":
    main()
