"""Stopping a run cleanly on SIGTERM or SIGINT: at the next safe point, not mid-step.

Kubernetes, Prefect's cancellation and `kill` send SIGTERM; Ctrl-C sends SIGINT. Either
one only *requests* a stop here (a process-wide flag); the training loops look at the
flag at their safe points (after each optimizer step in refine, after each epoch in
align), write a checkpoint that a re-run resumes from, and raise `StopRequested`. A
second signal of the same kind while the first is pending (a second or more later) stops
at once (KeyboardInterrupt), for when the safe point never comes.

Who installs the handlers:
- `handle_stop_signals()`, for a whole command (the CLI). Prefect's flow engine puts its
  own SIGTERM handler on top while a flow runs; when it fires it restores the previous
  one (ours) and re-sends the signal, so the flag is still set for training that runs in
  worker threads.
- the same, around a training loop. Signal handlers can only be installed from the main
  thread; there it takes SIGTERM and SIGINT for the loop's duration (so that no handler
  raises between two halves of an optimizer step) and gives them back after. In other
  threads it does nothing and the command's handlers do the work.

A sweep's runs go to worker processes (a process pool, Dask), which a signal to the
command does not reach, and in which Prefect's own SIGTERM handler may sit. So a stop is
also a file ($ORCA_STOP_FILE, set by `shared_stop_file` and inherited by the workers):
requesting a stop creates it, and every process that sees it stops at its next safe point.
Workers also take SIGTERM and SIGINT as stop requests (`install_stop_handlers`; Ctrl-C
reaches the whole process group).

`StopRequested` derives from BaseException, as KeyboardInterrupt does, so that no
`except Exception` on the way swallows it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)

STOP_FILE_ENV = "ORCA_STOP_FILE"  # a file whose existence means "stop", shared by processes

_requested = threading.Event()
_lock = threading.Lock()
_signal_number: int | None = None
_requested_at = 0.0
# A repeat of the signal sooner than this after the first is the same request passed on
# (Prefect's flow engine re-sends a SIGTERM it caught); a later one means "stop at once".
_REPEAT_AFTER_S = 1.0
_escalate = True  # whether a later repeat stops at once (not in worker processes)


class StopRequested(BaseException):
    """A stop was requested; raised at a safe point, after any checkpoint was written."""

    def __init__(self, signum: int | None, where: str = "", checkpoint: str | None = None):
        self.signum = signum
        self.where = where
        self.checkpoint = checkpoint
        saved = f"; checkpoint in {checkpoint}" if checkpoint else ""
        super().__init__(f"stopped by {signal_name(signum)}{' ' + where if where else ''}{saved}")

    def __reduce__(self):  # pickled whole: a worker process sends it to its parent
        return (StopRequested, (self.signum, self.where, self.checkpoint))

    @property
    def exit_status(self) -> int:
        """128 + the signal number, the shell's convention for a process a signal ended."""
        return 128 + (self.signum or signal.SIGTERM)


class RunStopped(Exception):
    """A run that was stopped, as an ordinary error: what a sweep's run reports to the
    sweep, across thread and process boundaries where a BaseException is not carried
    (Prefect's process pool drops one, and its caller would wait for ever)."""


def is_stop(error: BaseException) -> bool:
    """Whether `error` ends a run because somebody stopped it: StopRequested, Ctrl-C, or an
    engine's termination exception raised by a signal (e.g. Prefect's TerminationSignal,
    recognised by name so that this module needs no Prefect)."""
    if isinstance(error, (StopRequested, KeyboardInterrupt, RunStopped)):
        return True
    return type(error).__name__ == "TerminationSignal"


def signal_name(signum: int | None) -> str:
    return signal.Signals(signum).name if signum else "request"


def request_stop(signum: int | None = None) -> None:
    """Ask every training loop in this process, and in every process that shares its stop
    file ($ORCA_STOP_FILE), to stop at its next safe point."""
    global _signal_number
    with _lock:
        if not _requested.is_set():
            _signal_number = signum
            _requested.set()
            _write_stop_file(signum)


def stop_requested() -> bool:
    """Whether a stop was requested here, or in a process sharing the stop file (an
    os.stat per call, when one is set: microseconds next to a training step)."""
    if _requested.is_set():
        return True
    shared = os.environ.get(STOP_FILE_ENV)
    if shared and os.path.exists(shared):
        request_stop(_read_stop_file(shared))
        return True
    return False


def requesting_signal() -> int | None:
    """The signal that requested the stop (None: requested in code, or no stop)."""
    return _signal_number


def _write_stop_file(signum: int | None) -> None:
    shared = os.environ.get(STOP_FILE_ENV)
    if not shared or os.path.exists(shared):
        return
    with contextlib.suppress(OSError):  # a stop still holds in this process
        os.makedirs(os.path.dirname(shared), exist_ok=True)
        with open(shared, "w") as out:
            out.write(str(signum or 0))


def _read_stop_file(path: str) -> int | None:
    try:
        with open(path) as stop_file:
            return int(stop_file.read().strip() or 0) or None
    except (OSError, ValueError):
        return None


@contextmanager
def shared_stop_file(path: str | os.PathLike) -> Iterator[None]:
    """For its duration, a stop requested in this process or in any process started from
    it (which inherit $ORCA_STOP_FILE; a sweep's workers) reaches all of them: the
    stop is the file `path`, removed at the end."""
    previous = os.environ.get(STOP_FILE_ENV)
    os.environ[STOP_FILE_ENV] = os.fspath(path)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
        if previous is None:
            os.environ.pop(STOP_FILE_ENV, None)
        else:
            os.environ[STOP_FILE_ENV] = previous


def clear() -> None:
    """Forget a request (a new command in the same process, or a test)."""
    global _signal_number
    with _lock:
        _requested.clear()
        _signal_number = None


def check(where: str = "", checkpoint: str | None = None) -> None:
    """Raise StopRequested when a stop was requested."""
    if stop_requested():
        raise StopRequested(_signal_number, where, checkpoint)


def _on_signal(signum, frame) -> None:
    global _requested_at
    repeat = _requested.is_set() and _signal_number == signum
    if repeat and _escalate and time.monotonic() - _requested_at >= _REPEAT_AFTER_S:
        raise KeyboardInterrupt(f"second {signal_name(signum)}: stopping at once")
    if repeat:  # an engine passing on the signal it caught (Prefect does): the same request
        return
    _requested_at = time.monotonic()
    request_stop(signum)


def install_stop_handlers() -> None:
    """SIGTERM and SIGINT request a stop for the rest of this process's life, however often
    they come (a worker process's initializer: its parent decides when to stop at once;
    main thread only)."""
    global _escalate
    _escalate = False
    for sig in STOP_SIGNALS:
        signal.signal(sig, _on_signal)


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextmanager
def handle_stop_signals() -> Iterator[None]:
    """For its duration (main thread only), SIGTERM and SIGINT request a stop."""
    if not _in_main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, _on_signal) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
