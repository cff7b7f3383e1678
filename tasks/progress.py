"""How far the running stages have got: Prefect progress artifacts, and in-process listeners.

A stage task makes a `StageProgress` for its steps (epochs, examples) and calls `step()`
from its on_epoch callback. Each step goes to:

- the listeners of this process (`listening`), such as the `orca run` progress bar; they
  also hear when a stage ends, with its final state (`stage_ended`, called by the flows);
- a Prefect progress artifact (0-100) of the task run, for the stages in
  ARTIFACT_DESCRIPTIONS (embedder learning and fine-tuning), updated at most every
  ARTIFACT_MIN_INTERVAL_S seconds and always set to 100 when the stage finishes.

The artifact calls are HTTP round trips to the Prefect API. They are made in order by one
background thread of the process, in the stage's context (so they are the task run's), and
the stage trains on meanwhile; `flush_artifacts()` waits until those sent so far are
done (the pipeline calls it when its stages end, so a finished run's artifacts read 100).

Outside a Prefect task run (a task called through `.fn()`) no artifact is written. An
artifact call that fails is logged as a warning and ends the artifact's updates: progress
must never fail the stage it reports on.
"""

from __future__ import annotations

import contextvars
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
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
    run: str | None = None  # set: a sweep's whole run `run` has ended in `state` (stage "")

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


def run_ended(run: str, state_name: str) -> None:
    """Tell the listeners that a sweep's run `run` has ended in the state `state_name`: sent
    by the sweep flow, so it is heard for runs in worker processes and runs reused whole."""
    notify(ProgressEvent("", state=state_name, run=run))


def stage_ended(stage: str, state_name: str) -> None:
    """Tell the listeners that `stage` has ended in the state `state_name`."""
    notify(ProgressEvent(stage, state=state_name))


class _ArtifactCalls:
    """This process's artifact calls: one background thread makes them in order."""

    def __init__(self) -> None:
        self._executor: ThreadPoolExecutor | None = None
        self._pending: set[Future] = set()
        self._lock = threading.Lock()

    def submit(self, call: Callable[[], None]) -> None:
        """Make `call` in the background, in the caller's context (its task run)."""
        context = contextvars.copy_context()
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(1, thread_name_prefix="orca-artifacts")
            future = self._executor.submit(context.run, call)
            self._pending.add(future)
        future.add_done_callback(self._done)

    def _done(self, future: Future) -> None:
        with self._lock:
            self._pending.discard(future)

    def flush(self, timeout: float) -> None:
        with self._lock:
            pending = list(self._pending)
        wait(pending, timeout=timeout)


_artifact_calls = _ArtifactCalls()
# A forked child has none of the parent's threads: it starts its own when it needs one.
os.register_at_fork(after_in_child=_artifact_calls.__init__)


def flush_artifacts(timeout: float = 30.0) -> None:
    """Wait (at most `timeout` seconds) for the artifact calls sent so far."""
    _artifact_calls.flush(timeout)


class StageProgress:
    """The steps of one stage run: `step(done)` after each, `finish()` once it returns."""

    def __init__(self, stage: str, total: int, unit: str = "epochs") -> None:
        self.stage, self.total, self.unit = stage, total, unit
        self.artifact_id: UUID | None = None
        self._reporting = False  # whether this stage has an artifact (until a call fails)
        self._last_update = 0.0
        description = ARTIFACT_DESCRIPTIONS.get(stage)
        if description is not None and _in_task_run():
            self._reporting = True
            _artifact_calls.submit(lambda: self._create_artifact(description))
            self._last_update = time.monotonic()

    def _create_artifact(self, description: str) -> None:
        from prefect.artifacts import create_progress_artifact

        try:
            self.artifact_id = create_progress_artifact(
                0.0, key=f"orca-{self.stage}-progress", description=description
            )
        except Exception as error:  # a server hiccup: train on without the artifact
            self._drop(error)

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
        if self._reporting:
            _artifact_calls.submit(lambda: self._send_update(percent))
            self._last_update = time.monotonic()

    def _send_update(self, percent: float) -> None:
        if self.artifact_id is None:  # its creation failed
            return
        from prefect.artifacts import update_progress_artifact

        try:
            update_progress_artifact(self.artifact_id, percent)
        except Exception as error:  # a server hiccup: train on without the artifact
            self._drop(error)

    def _drop(self, error: Exception) -> None:
        """An artifact call failed: warn, and make no more calls for this stage."""
        self._reporting, self.artifact_id = False, None
        run_logger().warning(
            "%s progress artifact dropped: %s: %s", self.stage, type(error).__name__, error
        )


def _in_task_run() -> bool:
    from prefect.context import TaskRunContext

    return TaskRunContext.get() is not None
