"""The progress bar of `orca run` and `orca retry`: a line on stderr per step and per stage.

    [3/5] align    [############------------]  50%  2/4 epochs
    [3/5] align    [########################] 100%  Completed

Each update is a new line rather than a redraw in place, so that Prefect's log lines,
which go to the same console, interleave with it cleanly. The bar is shown only when
stderr is a terminal and the output is not --json.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TextIO

from tasks.progress import ProgressEvent, listening

BAR_WIDTH = 24
# Final states of a stage that finished its work; any other final state shows no bar.
DONE_STATES = ("Completed", "Cached")


def render(event: ProgressEvent, position: int, count: int, width: int = BAR_WIDTH) -> str:
    """One line for `event`, the stage at `position` (from 1) of `count` stages."""
    prefix = f"[{position}/{count}] {event.stage:<8s}"
    if event.state is not None and event.state not in DONE_STATES:
        return f"{prefix} {event.state}"
    percent = 100.0 if event.state is not None else event.percent
    filled = round(width * percent / 100)
    bar = "#" * filled + "-" * (width - filled)
    detail = event.state or f"{event.done}/{event.total} {event.unit}"
    return f"{prefix} [{bar}] {percent:3.0f}%  {detail}"


class ProgressBar:
    """A progress listener that writes `render`'s lines to `stream`, skipping repeats."""

    def __init__(self, stream: TextIO, stages: Sequence[str]) -> None:
        self.stream, self.stages = stream, tuple(stages)
        self._last_line: dict[str, str] = {}
        self._lock = threading.Lock()  # events come from the stage tasks' threads

    def __call__(self, event: ProgressEvent) -> None:
        if event.stage not in self.stages:
            return
        line = render(event, self.stages.index(event.stage) + 1, len(self.stages))
        with self._lock:
            if self._last_line.get(event.stage) == line:
                return
            self._last_line[event.stage] = line
            self.stream.write(line + "\n")
            self.stream.flush()


@contextmanager
def progress_bar(
    enabled: bool, stream: TextIO | None = None, stages: Sequence[str] | None = None
) -> Iterator[None]:
    """Show the pipeline's progress on `stream` (stderr) inside the block, if `enabled`
    and the stream is a terminal; `stages`: the stages the run has (default ORCA's five)."""
    from flows.pipeline import STAGE_NAMES

    stream = stream if stream is not None else sys.stderr
    if not enabled or not stream.isatty():
        yield
        return
    with listening(ProgressBar(stream, stages or STAGE_NAMES)):
        yield
