"""Run a module on several processes with torchrun, following what its main rank reports.

`run_module` starts `python -m torch.distributed.run --standalone --nproc-per-node N -m
MODULE ARGS...` (torchrun, as the same interpreter) and, while it runs, reads the JSON lines
that the module's main rank appends to `records` and hands each one to `on_record` as it
arrives, so that the caller can log per-epoch progress of a run in other processes. The
processes' output goes to `records` with a `.log` suffix; a run that fails raises
TorchrunError with the end of that log. A stop request (orca.stopping) is passed on to
torchrun as SIGTERM, and then raised here as StopRequested.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from orca import stopping

POLL_SECONDS = 0.2
LOG_TAIL_CHARS = 4000


class TorchrunError(RuntimeError):
    """The processes torchrun started failed."""


def _new_records(path: Path, offset: int) -> tuple[list[dict[str, Any]], int]:
    """The complete JSON lines of `path` after byte `offset`, and the offset after them."""
    if not path.exists():
        return [], offset
    with open(path, "rb") as handle:
        handle.seek(offset)
        data = handle.read()
    complete = data[: data.rfind(b"\n") + 1]  # a line still being written waits
    lines = complete.decode().splitlines()
    return [json.loads(line) for line in lines if line.strip()], offset + len(complete)


def run_module(
    module: str,
    args: list[str],
    processes: int,
    records: Path,
    on_record: Callable[[dict[str, Any]], None] | None = None,
    threads: int | None = None,
) -> None:
    """Run `module` on `processes` local processes; `threads` torch threads each (default:
    this process's threads shared out). Blocks until they end."""
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={processes}",
        "-m",
        module,
        *args,
    ]
    if threads is None:
        import torch

        threads = max(1, torch.get_num_threads() // processes)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    log = records.with_suffix(".log")
    offset, stop_passed_on = 0, False
    with open(log, "wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=env)
        try:
            while True:
                code = process.poll()
                new, offset = _new_records(records, offset)
                for record in new:
                    if on_record is not None:
                        on_record(record)
                if code is not None:
                    break
                if stopping.stop_requested() and not stop_passed_on:
                    process.terminate()  # torchrun passes SIGTERM on to its processes
                    stop_passed_on = True
                time.sleep(POLL_SECONDS)
        except BaseException:
            process.kill()
            process.wait()
            raise
    if stop_passed_on:
        stopping.check(f"in {module} on {processes} torchrun processes (a re-run resumes "
                       "from the last epoch checkpoint)")  # fmt: skip
    if code != 0:
        tail = log.read_text(errors="replace")[-LOG_TAIL_CHARS:]
        raise TorchrunError(
            f"torchrun of {module} on {processes} processes exited with status {code}; "
            f"the end of its output:\n{tail}"
        )
