"""Remote storage retries transient errors with backoff; deterministic stages fail fast."""

from __future__ import annotations

import errno

import fsspec
import pytest
from conftest import cached_stage_flow
from fsspec.implementations.memory import MemoryFileSystem

from runtime import remote_io
from runtime.remote_io import RetryingRemoteFileSystem, RetryPolicy, is_transient, retry_transient
from tasks import stages


class Flaky:
    """A callable that raises `errors` in turn, then returns "done"; counts its calls."""

    def __init__(self, *errors: BaseException):
        self.errors, self.calls = list(errors), 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "done"


def test_transient_errors_are_retried_with_growing_delays():
    waits: list[float] = []
    flaky = Flaky(ConnectionResetError("reset by peer"), TimeoutError("read timed out"))
    assert retry_transient(flaky, "reading s3://b/k", sleep=waits.append) == "done"
    assert flaky.calls == 3
    assert waits == [0.5, 1.0]


def test_retries_stop_after_the_policy_attempts_and_raise_the_last_error():
    waits: list[float] = []
    policy = RetryPolicy(attempts=4, first_delay_s=1.0, multiplier=3.0, max_delay_s=5.0)
    always = Flaky(*[OSError(errno.ETIMEDOUT, "timed out") for _ in range(10)])
    with pytest.raises(OSError, match="timed out"):
        retry_transient(always, "writing", policy=policy, sleep=waits.append)
    assert always.calls == 4
    assert waits == [1.0, 3.0, 5.0]  # 9.0 capped at max_delay_s


@pytest.mark.parametrize(
    "error",
    [FileNotFoundError(errno.ENOENT, "no such key"), PermissionError("denied"), ValueError("bad")],
    ids=["missing", "denied", "bug"],
)
def test_other_errors_are_raised_at_once(error):
    waits: list[float] = []
    flaky = Flaky(error)
    with pytest.raises(type(error)):
        retry_transient(flaky, "reading", sleep=waits.append)
    assert (flaky.calls, waits) == (1, [])


def test_which_errors_are_transient():
    class HttpError(Exception):
        def __init__(self, status: int):
            super().__init__(f"HTTP {status}")
            self.status = status

    assert is_transient(HttpError(503)) and is_transient(HttpError(429))
    assert not is_transient(HttpError(404)) and not is_transient(HttpError(403))
    assert is_transient(OSError(errno.ECONNREFUSED, "refused"))
    assert not is_transient(OSError(errno.ENOSPC, "disk full"))


def test_retry_policy_checks_its_fields():
    with pytest.raises(ValueError, match=r"attempts=0 is out of range; expected >= 1"):
        RetryPolicy(attempts=0)
    with pytest.raises(ValueError, match=r"multiplier=0.5 is out of range; expected >= 1"):
        RetryPolicy(multiplier=0.5)


@pytest.fixture
def flaky_memory(monkeypatch):
    """memory:// whose next opens fail: set `failures` to a list of errors to raise."""
    failures: list[BaseException] = []
    original = MemoryFileSystem._open

    def open_or_fail(self, path, *args, **kwargs):
        if failures:
            raise failures.pop(0)
        return original(self, path, *args, **kwargs)

    monkeypatch.setattr(MemoryFileSystem, "_open", open_or_fail)
    monkeypatch.setattr(remote_io, "DEFAULT_POLICY", RetryPolicy(first_delay_s=0.01))
    return failures


def test_the_storage_block_reads_and_writes_through_dropped_connections(flaky_memory):
    block = RetryingRemoteFileSystem(basepath="memory://orca-remote-io/records")
    flaky_memory.extend([ConnectionResetError("reset"), TimeoutError("slow")])
    block.write_path("ingest-abc", b"record")
    assert flaky_memory == []  # both failures met, then the write went through
    flaky_memory.append(BrokenPipeError("pipe"))
    assert block.read_path("ingest-abc") == b"record"
    flaky_memory.append(PermissionError("read-only bucket"))
    with pytest.raises(PermissionError):
        block.write_path("ingest-def", b"other")
    assert not fsspec.filesystem("memory").exists("/orca-remote-io/records/ingest-def")


def test_cache_records_on_a_flaky_url_are_written_and_read(
    prefect_harness, flaky_memory, monkeypatch
):
    """Prefect's result store goes through the block's async reads and writes."""
    monkeypatch.setenv("ORCA_RESULT_STORAGE", "memory://orca-remote-io/cache")
    run, calls = cached_stage_flow("remote-io-test")
    flaky_memory.extend([ConnectionResetError("reset"), ConnectionResetError("reset")])
    assert run(5) == ("Completed", {"double": 10})
    assert flaky_memory == []
    flaky_memory.append(TimeoutError("slow read"))
    assert run(5) == ("Cached", {"double": 10})
    assert calls == [5]


def test_stages_are_never_retried(prefect_harness, monkeypatch):
    from prefect import flow

    from orca.stages import ingest as ingest_stage

    assert {name: each.retries for name, each in stages.STAGE_TASKS.items()} == dict.fromkeys(
        stages.STAGE_TASKS, 0
    )
    calls = []

    def broken(*args, **kwargs):
        calls.append(1)
        raise ValueError("column 'x' has 3 NaN values")

    monkeypatch.setattr(ingest_stage, "ingest", broken)

    @flow
    def run() -> str:
        state = stages.ingest.with_options(refresh_cache=True)("gunpoint", 7, return_state=True)
        return f"{state.name}: {state.message}"

    assert run().startswith("Failed")
    assert calls == [1]
