"""`orca ingest`: the ingest stage alone, through the same cached task the pipeline uses."""

from __future__ import annotations

from typing import Any

from prefect import flow

from orca.config.pipeline import PipelineConfig
from tasks import stages, storage


@flow(name="orca-ingest", validate_parameters=True)
def ingest_only(config: PipelineConfig) -> dict[str, Any]:
    """Check and store a task's splits; a later `orca run` finds them in the cache."""
    storage.ensure_result_storage()  # the cache records' storage, where it is a URL
    return stages.ingest(
        task_name=config.task,
        seed=config.split_seed,
        data_version=config.data_version,
        train_fraction=config.train_fraction,
    )
