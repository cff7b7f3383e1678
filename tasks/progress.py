"""How far the running stages have got: Prefect progress artifacts, and in-process listeners.

A stage task makes a `StageProgress` for its steps (epochs, examples) and calls `step()`
from its on_epoch callback. Each step goes to:

- the listeners of this process (`listening`), such as the `orca run` progress bar; they
  also hear when a stage ends, with its final state (`stage_ended`, called by the flows);
- a Prefect progress artifact (0-100) of the task run, for the stages in
  ARTIFACT_DESCRIPTIONS (embedder learning and fine-tuning), updated at most every
  ARTIFACT_MIN_INTERVAL_S seconds and always set to 100 when the stage finishes.

Outside a Prefect task run (a task called through `.fn()`) no artifact is written. An
artifact call that fails is logged as a warning and ends the artifact's updates: progress
must never fail the stage it reports on.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from uuid import UUID

from tasks.logs import run_logger

# Stage name -> description of its progress artifact; other stages report to listeners only.
ARTIFACT_DESCRIPTIONS: dict[str, str] = {
    "align": "Embedder learning (stage 2): epochs done",
    "refine": "Fine-tuning (stage 3): epochs done",
}
# Each update is an API call and an event that the server records; short epochs of small
# models would pay for one per epoch (76 calls per 8 demo runs at 0.5 s), so at most one
# every 5 s: progress still moves on a stage long enough to watch.
ARTIFACT_MIN_INTERVAL_S = 5.0


@dataclass(frozen=True)
class ProgressEvent:
    """A stage's progress: `done` of `total` `unit`, or (with `state`) that it has ended."""

    stage: str
    done: int = 0
    total: int = 0
    unit: str = "epochs"
    state: str | None = None  # the final state name (Completed, Cached, Failed) once ended

    @property
    def percent(self) -> float:
        """0-100; a stage with nothing to count is at 100."""
        if self.total <= 0:
            return 100.0
        return min(100.0, 100.0 * self.done / self.total)


ProgressListener = Callable[[ProgressEvent], None]

_listeners: list[ProgressListener] = []
_listeners_lock = threading.Lock()


@contextmanager
def listening(listener: ProgressListener) -> Iterator[None]:
    """Send this process's progress events to `listener` inside the block.

    Events come from the stage tasks' threads; the listener must be thread-safe.
    """
    with _listeners_lock:
        _listeners.append(listener)
    try:
        yield
    finally:
        with _listeners_lock:
            _listeners.remove(listener)


def notify(event: ProgressEvent) -> None:
    with _listeners_lock:
        listeners = list(_listeners)
    for listener in listeners:
        listener(event)


def stage_ended(stage: str, state_name: str) -> None:
    """Tell the listeners that `stage` has ended in the state `state_name`."""
    notify(ProgressEvent(stage, state=state_name))


class StageProgress:
    """The steps of one stage run: `step(done)` after each, `finish()` once it returns."""

    def __init__(self, stage: str, total: int, unit: str = "epochs") -> None:
        self.stage, self.total, self.unit = stage, total, unit
        self.artifact_id: UUID | None = None
        self._last_update = 0.0
        description = ARTIFACT_DESCRIPTIONS.get(stage)
        if description is not None and _in_task_run():
            from prefect.artifacts import create_progress_artifact

            try:
                self.artifact_id = create_progress_artifact(
                    0.0, key=f"orca-{stage}-progress", description=description
                )
            except Exception as error:  # a server hiccup: train on without the artifact
                _warn(stage, error)
            self._last_update = time.monotonic()

    def step(self, done: int) -> None:
        """`done` steps of `total` are finished (clamped to `total`)."""
        event = ProgressEvent(self.stage, min(done, self.total), self.total, self.unit)
        notify(event)
        if time.monotonic() - self._last_update >= ARTIFACT_MIN_INTERVAL_S:
            self._update_artifact(event.percent)

    def finish(self) -> None:
        """The stage's work is done (also after an early stop): the artifact reads 100."""
        notify(ProgressEvent(self.stage, self.total, self.total, self.unit))
        self._update_artifact(100.0)

    def _update_artifact(self, percent: float) -> None:
        if self.artifact_id is None:
            return
        from prefect.artifacts import update_progress_artifact

        try:
            update_progress_artifact(self.artifact_id, percent)
        except Exception as error:  # a server hiccup: train on without the artifact
            _warn(self.stage, error)
            self.artifact_id = None
        self._last_update = time.monotonic()


def _warn(stage: str, error: Exception) -> None:
    run_logger().warning("%s progress artifact dropped: %s: %s", stage, type(error).__name__, error)


def _in_task_run() -> bool:
    from prefect.context import TaskRunContext

    return TaskRunContext.get() is not None
