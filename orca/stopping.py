"""Stopping a run cleanly on SIGTERM or SIGINT: at the next safe point, not mid-step.

Kubernetes, Prefect's cancellation and `kill` send SIGTERM; Ctrl-C sends SIGINT. Either
one only *requests* a stop here (a process-wide flag); the training loops look at the
flag at their safe points (after each optimizer step in refine, after each epoch in
align), write a checkpoint that a re-run resumes from, and raise `StopRequested`. A
second signal of the same kind while the first is pending stops at once
(KeyboardInterrupt), for when the safe point never comes.

Who installs the handlers:
- `handle_stop_signals()`, for a whole command (the CLI). Prefect's flow engine puts its
  own SIGTERM handler on top while a flow runs; when it fires it restores the previous
  one (ours) and re-sends the signal, so the flag is still set for training that runs in
  worker threads.
- the same, around a training loop. Signal handlers can only be installed from the main
  thread; there it takes SIGTERM and SIGINT for the loop's duration (so that no handler
  raises between two halves of an optimizer step) and gives them back after. In other
  threads it does nothing and the command's handlers do the work.

`StopRequested` derives from BaseException, as KeyboardInterrupt does, so that no
`except Exception` on the way swallows it.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)

_requested = threading.Event()
_lock = threading.Lock()
_signal_number: int | None = None


class StopRequested(BaseException):
    """A stop was requested; raised at a safe point, after any checkpoint was written."""

    def __init__(self, signum: int | None, where: str = "", checkpoint: str | None = None):
        self.signum = signum
        self.where = where
        self.checkpoint = checkpoint
        saved = f"; checkpoint in {checkpoint}" if checkpoint else ""
        super().__init__(f"stopped by {signal_name(signum)}{' ' + where if where else ''}{saved}")

    @property
    def exit_status(self) -> int:
        """128 + the signal number, the shell's convention for a process a signal ended."""
        return 128 + (self.signum or signal.SIGTERM)


def is_stop(error: BaseException) -> bool:
    """Whether `error` ends a run because somebody stopped it: StopRequested, Ctrl-C, or an
    engine's termination exception raised by a signal (e.g. Prefect's TerminationSignal,
    recognised by name so that this module needs no Prefect)."""
    if isinstance(error, (StopRequested, KeyboardInterrupt)):
        return True
    return type(error).__name__ == "TerminationSignal"


def signal_name(signum: int | None) -> str:
    return signal.Signals(signum).name if signum else "request"


def request_stop(signum: int | None = None) -> None:
    """Ask every training loop in this process to stop at its next safe point."""
    global _signal_number
    with _lock:
        if not _requested.is_set():
            _signal_number = signum
            _requested.set()


def stop_requested() -> bool:
    return _requested.is_set()


def requesting_signal() -> int | None:
    """The signal that requested the stop (None: requested in code, or no stop)."""
    return _signal_number


def clear() -> None:
    """Forget a request (a new command in the same process, or a test)."""
    global _signal_number
    with _lock:
        _requested.clear()
        _signal_number = None


def check(where: str = "", checkpoint: str | None = None) -> None:
    """Raise StopRequested when a stop was requested."""
    if _requested.is_set():
        raise StopRequested(_signal_number, where, checkpoint)


def _on_signal(signum, frame) -> None:
    if _requested.is_set() and _signal_number == signum:
        raise KeyboardInterrupt(f"second {signal_name(signum)}: stopping at once")
    request_stop(signum)


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
