"""Retries with backoff for reads and writes of remote storage, and only for those.

A cache record on an fsspec URL (s3://, gcs://, an SMB share, ...) crosses a network, where
a dropped connection, a timeout or a throttling reply is expected now and then and the same
call a moment later succeeds. `retry_transient` retries such errors, with exponential
backoff, up to RetryPolicy.attempts tries, logging each retry; anything else (a missing
file, a permission error, a bug) is raised at once.

The pipeline's stages get no retries: they are deterministic, so a stage that failed would
fail again the same way. They fail fast with their error, and `orca retry` runs the flow
again once the cause is fixed.

`RetryingRemoteFileSystem` is Prefect's RemoteFileSystem block with its reads and writes
wrapped so; tasks/storage.py saves one for a result storage URL.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from prefect.filesystems import RemoteFileSystem

from orca.config.base import Config, check_number

logger = logging.getLogger(__name__)
T = TypeVar("T")

TRANSIENT_ERRNOS = frozenset(
    {
        errno.EAGAIN,
        errno.EBUSY,
        errno.ETIMEDOUT,
        errno.ECONNRESET,
        errno.ECONNREFUSED,
        errno.ECONNABORTED,
        errno.ENETDOWN,
        errno.ENETUNREACH,
        errno.ENETRESET,
        errno.EHOSTUNREACH,
        errno.EPIPE,
    }
)
TRANSIENT_HTTP_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy(Config):
    """`attempts` tries in all; the n-th retry waits first_delay_s * multiplier**(n-1)
    seconds, at most max_delay_s."""

    attempts: int = 5
    first_delay_s: float = 0.5
    multiplier: float = 2.0
    max_delay_s: float = 8.0

    def __post_init__(self) -> None:
        check_number("attempts", self.attempts, minimum=1, integer=True)
        check_number("first_delay_s", self.first_delay_s, minimum=0)
        check_number("multiplier", self.multiplier, minimum=1)
        check_number("max_delay_s", self.max_delay_s, minimum=0)

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number `retry` (1-based)."""
        return min(self.first_delay_s * self.multiplier ** (retry - 1), self.max_delay_s)


DEFAULT_POLICY = RetryPolicy()


def is_transient(error: BaseException) -> bool:
    """True for an error that the same call may not meet again: a timeout, a dropped or
    refused connection, a busy or throttled server (HTTP 408, 425, 429, 5xx gateway)."""
    if isinstance(error, (TimeoutError, ConnectionError)):
        return True
    if isinstance(error, OSError) and error.errno in TRANSIENT_ERRNOS:
        return True
    status = getattr(error, "status", None) or getattr(error, "status_code", None)
    return isinstance(status, int) and status in TRANSIENT_HTTP_STATUS


def _give_up(error: BaseException, attempt: int, policy: RetryPolicy) -> bool:
    return attempt >= policy.attempts or not is_transient(error)


def _log_retry(what: str, error: BaseException, attempt: int, policy: RetryPolicy) -> float:
    wait = policy.delay(attempt)
    logger.warning(
        "%s failed (%s: %s), try %d of %d; retrying in %.1f s",
        what,
        type(error).__name__,
        error,
        attempt,
        policy.attempts,
        wait,
    )
    return wait


def retry_transient(
    operation: Callable[[], T],
    what: str,
    policy: RetryPolicy | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """operation(), tried again after each transient error (see is_transient); `policy`
    defaults to DEFAULT_POLICY."""
    policy = policy or DEFAULT_POLICY
    attempt = 1
    while True:
        try:
            return operation()
        except Exception as error:
            if _give_up(error, attempt, policy):
                raise
            sleep(_log_retry(what, error, attempt, policy))
            attempt += 1


async def aretry_transient(
    operation: Callable[[], Awaitable[T]], what: str, policy: RetryPolicy | None = None
) -> T:
    """The async form of retry_transient."""
    policy = policy or DEFAULT_POLICY
    attempt = 1
    while True:
        try:
            return await operation()
        except Exception as error:
            if _give_up(error, attempt, policy):
                raise
            await asyncio.sleep(_log_retry(what, error, attempt, policy))
            attempt += 1


class RetryingRemoteFileSystem(RemoteFileSystem):
    """A RemoteFileSystem whose reads and writes retry transient errors with backoff."""

    _block_type_name = "Orca Retrying Remote File System"
    _block_type_slug = "orca-retrying-remote-file-system"
    _description = (
        "Prefect's Remote File System with retries and backoff for transient network errors."
    )

    async def aread_path(self, path: str) -> bytes:
        read = super().aread_path
        return await aretry_transient(lambda: read(path), f"reading {self.basepath}/{path}")

    async def awrite_path(self, path: str, content: bytes) -> str:
        write = super().awrite_path
        return await aretry_transient(
            lambda: write(path, content), f"writing {self.basepath}/{path}"
        )

    # Prefect passes _sync=True to ask its dispatching methods for the blocking form, and
    # _sync=False for the coroutine; the blocking forms are RemoteFileSystem's own, retried.
    def read_path(self, path: str, _sync: bool | None = None) -> bytes:
        if _sync is False:
            return self.aread_path(path)  # type: ignore[return-value]
        read = super().read_path
        return retry_transient(lambda: read(path, _sync=True), f"reading {self.basepath}/{path}")

    def write_path(self, path: str, content: bytes, _sync: bool | None = None) -> str:
        if _sync is False:
            return self.awrite_path(path, content)  # type: ignore[return-value]
        write = super().write_path
        return retry_transient(
            lambda: write(path, content, _sync=True), f"writing {self.basepath}/{path}"
        )
