"""Task runners for the benchmark fan-out, and the one Prefect API their processes share.

One worker runs the pipelines in the flow's own process, one after another. Several workers
are separate processes (Prefect's ProcessPoolTaskRunner): the body's forward and backward
passes on small batches are many short torch calls, and threads of one process take turns
at the GIL for each of them, so two threads train two small models no faster than one.

Worker processes must talk to the same Prefect API as the flow. With no PREFECT_API_URL
set, Prefect's ephemeral mode starts a temporary local server per process, so
`shared_prefect_api` starts that server once, up front, and hands its URL to the workers.
Stage caching across the worker processes is safe: the cache locks live in the state
directory (tasks.locks).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def set_torch_threads(threads: int) -> None:
    """Process-pool initializer: the torch thread count of a worker process."""
    import torch

    torch.set_num_threads(threads)


def benchmark_task_runner(workers: int, threads: int) -> Any:
    """The task runner for `workers` concurrent pipeline runs of `threads` torch threads."""
    from prefect.task_runners import ProcessPoolTaskRunner, ThreadPoolTaskRunner

    if workers == 1:
        return ThreadPoolTaskRunner(max_workers=1)
    return ProcessPoolTaskRunner(
        max_workers=workers, initializer=set_torch_threads, initargs=(threads,)
    )


@contextmanager
def shared_prefect_api() -> Iterator[str]:
    """Yield the API URL that the flow and its worker processes use: PREFECT_API_URL when
    set, else a temporary local server (Prefect's own, as its ephemeral mode starts it),
    started here and set as PREFECT_API_URL for the duration."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    configured = PREFECT_API_URL.value()
    if configured:
        yield configured
        return
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()  # the same instance ephemeral mode would start
    server.start()
    with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
        yield server.api_url
