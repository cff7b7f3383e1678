"""`orca ingest`: the ingest stage alone, through the same cached task the pipeline uses."""

from __future__ import annotations

from typing import Any

from prefect import flow

from orca.config.pipeline import PipelineConfig
from tasks.stage_runs import ingest, stage_run


@flow(name="orca-ingest", validate_parameters=True)
def ingest_only(config: PipelineConfig) -> dict[str, Any]:
    """Check and store a task's splits; a later `orca run` finds them in the cache."""
    with stage_run(config):
        return ingest(config)
