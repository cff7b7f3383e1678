"""Cache-key locks shared by every process that uses one orca state directory.

Prefect's SERIALIZABLE cache isolation takes a lock per cache key, so a stage (or a whole
pipeline run) with a given key is computed once even when several runs need it at the same
time; the others wait and then read the cached result. An in-process lock only covers
threads. `StateLockManager` keeps the locks as files under `<state>/locks/`, so worker
processes of one `orca bench`, and two `orca bench` commands started together, share them.

It changes four things in Prefect's `FileSystemLockManager`:
- the lock directory follows the active state directory (ORCA_HOME) at each call;
- a lock file appears whole: it is written aside and hard-linked into place, which fails if
  the lock exists (Prefect's creates an empty file and then fills it, so a reader in
  between finds no JSON);
- a lock records its holder's host and process id, and a lock whose process is gone on this
  host (a worker killed with SIGKILL never releases its locks) is broken, so a re-run does
  not wait forever. Breaking is atomic: checking that the holder is dead, removing the
  lock and taking it happen under a per-key guard, an `flock` on `<key>.guard` that the
  OS drops when its process dies (so a guard is never stale). Without it two processes
  could both find the dead lock, one remove it and take the key, and the other then
  remove that fresh lock and take the key too;
- releasing a lock that is already released is not an error.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

import anyio
import anyio.to_thread
from prefect.locking.filesystem import FileSystemLockManager

from runtime.state import StateDir


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


class StateLockManager(FileSystemLockManager):
    """File locks under `<state>/locks/`, with locks of dead holders broken (module doc)."""

    def __init__(self) -> None:
        super().__init__(Path("."))

    @property
    def lock_files_directory(self) -> Path:
        return StateDir.from_env().root / "locks"

    @lock_files_directory.setter
    def lock_files_directory(self, _value: Path) -> None:
        """Ignored: the directory always follows the active state directory."""

    def acquire_lock(
        self,
        key: str,
        holder: str,
        acquire_timeout: float | None = None,
        hold_timeout: float | None = None,
    ) -> bool:
        deadline = None if acquire_timeout is None else time.monotonic() + acquire_timeout
        while True:
            if self._create(key, holder, hold_timeout) or self.is_lock_holder(key, holder):
                return True
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            if not self.wait_for_lock(key, left):
                return False

    async def aacquire_lock(
        self,
        key: str,
        holder: str,
        acquire_timeout: float | None = None,
        hold_timeout: float | None = None,
    ) -> bool:
        return await anyio.to_thread.run_sync(
            self.acquire_lock, key, holder, acquire_timeout, hold_timeout
        )

    def _create(self, key: str, holder: str, hold_timeout: float | None) -> bool:
        """Create the lock file with its content in one step; False if it exists."""
        self._ensure_lock_files_directory_exists()
        path = self._lock_path_for_key(key)
        expiration = None
        if hold_timeout is not None:
            expiration = datetime.now(timezone.utc) + timedelta(seconds=hold_timeout)
        info = {
            "holder": holder,
            "expiration": None if expiration is None else expiration.isoformat(),
            "host": socket.gethostname(),
            "pid": os.getpid(),
        }
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
        tmp.write_text(json.dumps(info))
        try:
            with self._guard(key):
                if self._orphaned(key):
                    path.unlink(missing_ok=True)
                os.link(tmp, path)
        except FileExistsError:
            return False
        finally:
            tmp.unlink(missing_ok=True)
        self._locks[key] = {"holder": holder, "expiration": expiration, "path": path}
        return True

    def release_lock(self, key: str, holder: str) -> None:
        """Release `holder`'s lock; a lock already released is left alone (Prefect commits a
        committed stage transaction again when its enclosing one commits). A lock held by
        someone else raises ValueError."""
        if not self.is_locked(key):
            self._locks.pop(key, None)
            return
        super().release_lock(key, holder)

    def is_locked(self, key: str, use_cache: bool = False) -> bool:
        locked = super().is_locked(key, use_cache=use_cache)
        if locked and self._orphaned(key):
            with self._guard(key):
                if not self._orphaned(key):  # taken again since: by a live holder
                    return self._lock_path_for_key(key).exists()
                self._lock_path_for_key(key).unlink(missing_ok=True)
            self._locks.pop(key, None)
            return False
        return locked

    @contextmanager
    def _guard(self, key: str) -> Iterator[None]:
        """Hold `key`'s guard: no other process (or thread) breaks or takes the lock until
        it is released. An advisory `flock`, released by the OS if this process dies."""
        self._ensure_lock_files_directory_exists()
        guard = self.lock_files_directory.joinpath(key).with_suffix(".guard")
        with open(guard, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _orphaned(self, key: str) -> bool:
        """True when the lock's holder is known to be dead."""
        path = self._lock_path_for_key(key)
        try:
            info = json.loads(path.read_bytes())
        except (FileNotFoundError, ValueError):
            return False
        pid, host = info.get("pid"), info.get("host")
        if not isinstance(pid, int) or host != socket.gethostname():
            return False  # not recorded yet, or held on another machine
        return not _process_alive(pid)
