"""Fault-injection hooks for the tests (and anyone trying `orca retry`), set by environment.

- $ORCA_FAIL_STAGE=STAGE: the stage raises as it starts, after the earlier stages ended.
- $ORCA_HOLD_STAGE=STAGE: the stage stops when its work is done (its outputs written, its
  cache record not yet) and waits there, so that a test can kill the process at that
  moment. STAGE@N instead holds after epoch N (0-based) of a stage that trains in epochs
  (align, refine), once that epoch's checkpoint is written. While it holds, the process
  writes {"pid": ..., "stage": ..., "epoch": ...} to $ORCA_HOLD_FILE. A stop request
  (SIGTERM, SIGINT: orca.stopping) ends the hold, so the stage stops at its next safe point.

A stage that comes back Cached does not run, so it neither fails nor holds.
"""

from __future__ import annotations

import json
import os
import time

from orca import stopping
from orca.atomic import atomic_path
from orca.stages.order import check_stage

FAIL_STAGE_ENV_VAR = "ORCA_FAIL_STAGE"
HOLD_STAGE_ENV_VAR = "ORCA_HOLD_STAGE"
HOLD_FILE_ENV_VAR = "ORCA_HOLD_FILE"
HOLD_LIMIT_SECONDS = 600.0


def _check_stage(variable: str, stage: str) -> None:
    check_stage(stage, field=f"${variable}")


def fail_if_injected(stage: str) -> None:
    """Raise in `stage` when $ORCA_FAIL_STAGE names it."""
    failing = os.environ.get(FAIL_STAGE_ENV_VAR)
    if not failing:
        return
    _check_stage(FAIL_STAGE_ENV_VAR, failing)
    if failing == stage:
        raise RuntimeError(f"stage {stage!r} failed: injected by {FAIL_STAGE_ENV_VAR}={stage}")


def hold_point() -> tuple[str, int | None] | None:
    """The (stage, epoch or None) that $ORCA_HOLD_STAGE names, checked; None when unset."""
    value = os.environ.get(HOLD_STAGE_ENV_VAR)
    if not value:
        return None
    stage, at, epoch = value.partition("@")
    _check_stage(HOLD_STAGE_ENV_VAR, stage)
    if at and not epoch.isdigit():
        raise ValueError(
            f"{HOLD_STAGE_ENV_VAR}={value!r}: after '@' expected an epoch number, e.g. refine@1"
        )
    return stage, int(epoch) if at else None


def hold_if_injected(stage: str, epoch: int | None = None) -> None:
    """Wait here, until killed, when $ORCA_HOLD_STAGE names this stage (and epoch)."""
    point = hold_point()
    if point != (stage, epoch):
        return
    marker = os.environ.get(HOLD_FILE_ENV_VAR)
    if marker:
        with atomic_path(marker) as tmp:
            tmp.write_text(json.dumps({"pid": os.getpid(), "stage": stage, "epoch": epoch}))
    deadline = time.monotonic() + HOLD_LIMIT_SECONDS
    while time.monotonic() < deadline:
        if stopping.stop_requested():
            return  # SIGTERM or SIGINT: let the stage reach its next safe point
        time.sleep(0.1)
    raise RuntimeError(f"{HOLD_STAGE_ENV_VAR}: held in {stage} for {HOLD_LIMIT_SECONDS:.0f} s")
