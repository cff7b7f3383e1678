"""Task runners for a sweep's runs, and the one Prefect API their processes share.

Runners are chosen by name (`orca bench --runner NAME`) from TASK_RUNNERS; each entry opens
a Prefect task runner for the duration of one sweep and closes what it started:

- `local` (the default): one worker runs the pipelines in the flow's own process, one after
  another; several workers are separate processes (Prefect's ProcessPoolTaskRunner). The
  body's forward and backward passes on small batches are many short torch calls, and
  threads of one process take turns at the GIL for each of them, so two threads train two
  small models no faster than one.
- `dask`: the runs go to a Dask cluster (prefect-dask's DaskTaskRunner): a LocalCluster of
  `workers` processes, or the scheduler at `dask_address`. Each Dask worker is given orca's
  environment (the state directory, MLflow's tracking URI, the result storage, the Prefect
  API) by a worker plugin, so a worker started elsewhere by hand writes where the flow reads.

Worker processes must talk to the same Prefect API as the flow. With no PREFECT_API_URL
set, Prefect's ephemeral mode would start a temporary local server per process, so the
command starts one (runtime/prefect_api.py) and hands its URL to the workers.
Stage caching across the worker processes is safe: the cache locks live in the state
directory (runtime.locks).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any

from orca.config.base import Config, check_choice, check_number
from orca.registry import Registry


@dataclass(frozen=True)
class RunnerOptions(Config):
    """How a sweep's runs are spread: `runner` (a TASK_RUNNERS name), `workers` runs at
    once, `threads` torch threads per run, and for `dask` an existing scheduler's address
    (None: a LocalCluster of `workers` processes, closed when the sweep ends)."""

    runner: str = "local"
    workers: int = 1
    threads: int = 1
    dask_address: str | None = None

    def __post_init__(self) -> None:
        check_choice("runner", self.runner, TASK_RUNNERS.names())
        check_number("workers", self.workers, minimum=1, integer=True)
        check_number("threads", self.threads, minimum=1, integer=True)
        if self.dask_address is not None and self.runner != "dask":
            raise ValueError(
                f"dask_address={self.dask_address!r} needs runner='dask', got {self.runner!r}"
            )
        TASK_RUNNERS.get(self.runner).check_installed(self.runner)


@dataclass(frozen=True)
class TaskRunnerSpec:
    """A registered runner: `open(options)` is a context manager yielding the Prefect task
    runner for one sweep; `requires` names a module that must be importable, from the
    package extra `extra`."""

    open: Callable[[RunnerOptions], AbstractContextManager[Any]]
    requires: str | None = None
    extra: str | None = None

    def check_installed(self, name: str) -> None:
        if self.requires is not None and importlib.util.find_spec(self.requires) is None:
            raise ValueError(
                f"runner={name!r} needs {self.requires}, which is not installed; "
                f"install it with: pip install 'orca-xmodal[{self.extra}]'"
            )


TASK_RUNNERS: Registry[TaskRunnerSpec] = Registry("task runner")


def open_task_runner(options: RunnerOptions) -> AbstractContextManager[Any]:
    """The task runner that `options` names, as a context manager over its lifetime."""
    return TASK_RUNNERS.get(options.runner).open(options)


def start_worker(threads: int) -> None:
    """Process-pool initializer: the torch thread count of a worker process, and SIGTERM
    and SIGINT as stop requests for its whole life (orca.stopping), so that Ctrl-C, which
    reaches the whole process group, ends its training at a safe point, not the process."""
    import torch

    from orca import stopping

    torch.set_num_threads(threads)
    stopping.install_stop_handlers()


@contextmanager
def local_task_runner(options: RunnerOptions) -> Iterator[Any]:
    """The flow's own process for one worker, else a pool of worker processes."""
    from prefect.task_runners import ProcessPoolTaskRunner, ThreadPoolTaskRunner

    if options.workers == 1:
        yield ThreadPoolTaskRunner(max_workers=1)
        return
    yield ProcessPoolTaskRunner(
        max_workers=options.workers, initializer=start_worker, initargs=(options.threads,)
    )


def dask_task_runner(options: RunnerOptions) -> AbstractContextManager[Any]:
    """A Dask cluster's workers (runtime/dask_cluster.py; imported only when chosen)."""
    from runtime.dask_cluster import dask_task_runner as open_dask

    return open_dask(options.workers, options.threads, options.dask_address)


TASK_RUNNERS.register("local", TaskRunnerSpec(local_task_runner))
TASK_RUNNERS.register("dask", TaskRunnerSpec(dask_task_runner, "prefect_dask", "dask"))
