"""Progress bars on stderr for `orca run`, `orca retry`, `orca bench` and `orca demo`.

Drawn with rich from the progress events of tasks/progress.py (a stage's steps, and its
end with its final state), one row each:

    runs        ━━━━━━━━━━━━━━━╺━━━━━━━━━━━━━━━━━━━━━━━━ 3/8 runs          0:04:10   (sweeps)
    run 4       ━━━━━━━━━━━━━━━━━━━━━━━━╺━━━━━━━━━━━━━━━ 3/5 stages        0:01:02
      ingest    ━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━ Cached
      proxy     ━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━ 60/60 examples Completed
      align     ━━━━━━━━━━━━━━━━━━━━╺━━━━━━━━━━━━━━━━━━━ 2/4 epochs

The runs row counts the sweep flow's run-ended events, which come for every run, wherever
it ran (worker processes, Dask, or reused whole from the run cache). Stage events carry a
stage's name but not its run's, so the stage rows follow runs in this process by order: a
run is over when its method's last stage ends (orca.stages.order) or a stage ends in any
state but Completed or Cached, and the next event starts the next run's rows. Runs in
worker processes move no stage row.

The bars are drawn only when `enabled` (not --json) and the console is a terminal (rich's
own test: a tty, or TTY_COMPATIBLE=1 / FORCE_COLOR in the environment). While they are
drawn, log lines that rich handlers (Prefect's console log) write to the same terminal are
printed above them rather than through them.
"""

from __future__ import annotations

import io
import logging
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.text import Text

from orca.stages.order import FAMILY_STAGES
from tasks.progress import ProgressEvent, listening

DONE_STATES = ("Completed", "Cached")  # a stage that ends otherwise ends its run
LAST_STAGES = frozenset(stages[-1] for stages in FAMILY_STAGES.values())


def _family_stages(stage: str) -> tuple[str, ...] | None:
    """The stages of the one method family that runs `stage`; None if several do."""
    families = [stages for stages in FAMILY_STAGES.values() if stage in stages]
    return families[0] if len(families) == 1 else None


class ProgressView:
    """A tasks/progress.py listener that keeps rich progress rows up to date (thread-safe:
    events come from the stage tasks' threads).

    `runs`: how many runs to expect (a runs row when more than one); `stages`: each run's
    stages when known (else learnt from the events); `label`: the run row's name."""

    def __init__(
        self,
        progress: Progress,
        runs: int = 1,
        stages: Sequence[str] | None = None,
        label: str = "run",
    ) -> None:
        self._progress, self._label, self._runs = progress, label, runs
        self._stages = tuple(stages) if stages else None
        self._lock = threading.Lock()
        self._runs_done = 0  # runs whose stages this process has seen end
        self._runs_finished = 0  # runs the sweep has reported ended
        self._runs_row: TaskID | None = None
        if runs > 1:
            self._runs_row = progress.add_task("runs", total=runs, detail=f"0/{runs} runs")
        self._run_row = progress.add_task(self._run_label(), total=None, detail="")
        self._stage_rows: dict[str, TaskID] = {}
        self._steps: dict[str, str] = {}  # stage -> its last "done/total unit"
        self._ended: list[str] = []
        self._run_stages = self._stages
        self._run_over = False
        self._show_run()

    def __call__(self, event: ProgressEvent) -> None:
        with self._lock:
            if event.run is not None:  # a sweep's run has ended, wherever it ran
                self._runs_finished += 1
                self._show_runs()
                return
            if self._run_over:
                self._next_run()
            if event.state is None:
                self._step(event)
            else:
                self._end(event)

    def finish(self) -> None:
        """The sweep is over: every run has ended, heard or not."""
        with self._lock:
            self._runs_finished = self._runs
            self._show_runs()

    def _run_label(self) -> str:
        return self._label if self._runs_row is None else f"{self._label} {self._runs_done + 1}"

    def _show_runs(self) -> None:
        if self._runs_row is not None:
            done = min(self._runs_finished, self._runs)
            self._progress.update(
                self._runs_row, completed=done, detail=f"{done}/{self._runs} runs"
            )

    def _show_run(self) -> None:
        total = len(self._run_stages) if self._run_stages else None
        self._progress.update(
            self._run_row,
            total=total,
            completed=len(self._ended),
            detail=f"{len(self._ended)}/{total or '?'} stages",
        )

    def _row(self, stage: str) -> TaskID:
        if stage not in self._stage_rows:
            self._stage_rows[stage] = self._progress.add_task(f"  {stage}", total=100, detail="")
        return self._stage_rows[stage]

    def _step(self, event: ProgressEvent) -> None:
        self._steps[event.stage] = f"{event.done}/{event.total} {event.unit}"
        self._progress.update(
            self._row(event.stage), completed=event.percent, detail=self._steps[event.stage]
        )

    def _end(self, event: ProgressEvent) -> None:
        done = event.state in DONE_STATES
        state = f"[{'green' if done else 'red'}]{event.state}[/]"
        steps = self._steps.get(event.stage)
        update = {"completed": 100} if done else {}
        self._progress.update(
            self._row(event.stage), detail=f"{steps} {state}" if steps else state, **update
        )
        self._ended.append(event.stage)
        self._run_stages = self._run_stages or _family_stages(event.stage)
        self._show_run()
        if not done or event.stage in LAST_STAGES:
            self._run_over = True
            self._runs_done += 1

    def _next_run(self) -> None:
        for row in self._stage_rows.values():
            self._progress.remove_task(row)
        self._stage_rows.clear()
        self._steps.clear()
        self._ended.clear()
        self._run_stages = self._stages
        self._run_over = False
        self._progress.update(self._run_row, description=self._run_label())
        self._show_run()


def make_progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}", style="bold"),
        BarColumn(bar_width=32),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        console=console,
        refresh_per_second=4,
        redirect_stdout=sys.stdout.isatty(),  # stdout to a file or pipe stays there
        redirect_stderr=True,
    )


class _PrintAbove(io.TextIOBase):
    """A text stream whose lines the live display prints above its bars (escape sequences,
    such as a log handler's colours, kept)."""

    def __init__(self, console: Console, terminal: TextIO) -> None:
        self._console, self._terminal, self._partial = console, terminal, ""

    def write(self, text: str) -> int:
        *lines, self._partial = (self._partial + text).split("\n")
        for line in lines:
            self._console.print(Text.from_ansi(line), soft_wrap=True)
        return len(text)

    def isatty(self) -> bool:
        return self._terminal.isatty()

    def close_line(self) -> None:
        if self._partial:
            self.write("\n")


@contextmanager
def _log_lines_above(console: Console) -> Iterator[None]:
    """While the bars are drawn, rich log handlers that write to the bars' terminal
    (Prefect's console handler) print each line above the bars instead of through them."""
    terminal, above = console.file, _PrintAbove(console, console.file)
    moved = []
    for logger in [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]:
        for handler in getattr(logger, "handlers", ()):
            handler_console = getattr(handler, "console", None)
            if isinstance(handler_console, Console) and handler_console.file is terminal:
                handler_console.file = above
                moved.append(handler_console)
    try:
        yield
    finally:
        above.close_line()
        for handler_console in moved:
            handler_console.file = terminal


@contextmanager
def progress_bars(
    enabled: bool,
    *,
    runs: int = 1,
    stages: Sequence[str] | None = None,
    label: str = "run",
    console: Console | None = None,
) -> Iterator[ProgressView | None]:
    """Draw the progress of the runs inside the block on `console` (default: stderr), if
    `enabled` and the console is a terminal; yields the view (None when not drawn)."""
    console = console if console is not None else Console(stderr=True)
    if not enabled or not console.is_terminal:
        yield None
        return
    progress = make_progress(console)
    view = ProgressView(progress, runs=runs, stages=stages, label=label)
    with progress, _log_lines_above(console), listening(view):
        yield view
        view.finish()
