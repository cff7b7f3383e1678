"""The `dask` task runner: a sweep's runs on a Dask cluster (needs the `dask` extra).

prefect-dask's DaskTaskRunner sends each run to a Dask worker. Without an address, a
LocalCluster of `workers` single-threaded worker processes is started for the sweep
and closed after it; with one, the runs go to that scheduler's workers.

Prefect's settings (its API URL, the result storage path) travel with each run. orca's own
environment does not: a worker plugin sets it in every worker process before it runs
anything, so workers started by hand (`dask worker ADDRESS`) use the flow's state
directory, MLflow store and result storage. On other hosts those must be reachable there
too: a shared filesystem for ORCA_HOME, and a Prefect server and MLflow tracking URI that
every host can reach (see README, "Beyond one machine").
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from distributed import Client, LocalCluster
from distributed.diagnostics.plugin import WorkerPlugin
from prefect_dask import DaskTaskRunner

from runtime.state import worker_environment


class WorkerEnvironment(WorkerPlugin):
    """Sets orca's environment in each worker process (orca reads ORCA_HOME, and MLflow its
    tracking URI, at each call, so a running worker picks them up)."""

    name = "orca-environment"

    def __init__(self, environment: dict[str, str]) -> None:
        self.environment = environment

    def setup(self, worker: Any) -> None:
        os.environ.update(self.environment)


@contextmanager
def dask_task_runner(
    workers: int, threads: int, address: str | None = None
) -> Iterator[DaskTaskRunner]:
    """A DaskTaskRunner on the scheduler at `address`, or on a LocalCluster of `workers`
    processes with `threads` torch threads each."""
    with ExitStack() as stack:
        if address is None:
            cluster = LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                # Dask starts workers with OMP_NUM_THREADS=1, which sizes torch's thread pool.
                # (Its nannies, here in the flow's process, also set that variable here; the
                # flow's own torch threads are set before the cluster starts.)
                env={"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)},
            )
            address = stack.enter_context(cluster).scheduler_address
        client = stack.enter_context(Client(address, set_as_default=False))
        client.register_plugin(WorkerEnvironment(worker_environment()))
        yield DaskTaskRunner(address=address)
