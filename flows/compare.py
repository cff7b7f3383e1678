"""The compare flow: a sweep's results from MLflow -> the cross-benchmark comparison.

Writes reports/ (Markdown, CSV, performance-profile PNG), publishes a Prefect table and
markdown artifact, logs the files to the sweep's MLflow run, and gives each task's best
fine-tuned model the registry alias `champion` (classical baselines compete in the report,
not for the alias: they have no model to register).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from prefect import flow

from orca.errors import NoResultsError
from orca.reporting.results import machine_description
from tasks import sweep_tracking
from tasks.reports import comparison_report


@flow(name="orca-compare", validate_parameters=True)
def compare(
    sweep_run_id: str | None = None,
    reports_dir: str = "reports",
    sweep_flow_run_id: str | None = None,
) -> dict[str, Any]:
    """Assemble the comparison of one sweep: its MLflow run `sweep_run_id`, or the sweep
    that Prefect flow run `sweep_flow_run_id` ran (what the weekly refresh's trigger
    passes), or else the latest."""
    if sweep_run_id and sweep_flow_run_id:
        raise ValueError("give sweep_run_id or sweep_flow_run_id, not both")
    if sweep_flow_run_id:
        sweep_run_id = sweep_tracking.sweep_run_of_flow_run(sweep_flow_run_id)
    sweep_run_id = sweep_run_id or sweep_tracking.latest_sweep_run_id()
    runs = sweep_tracking.sweep_results(sweep_run_id)
    if not runs:
        raise NoResultsError(f"sweep run {sweep_run_id} has no finished pipeline runs")
    context = {
        "sweep run": sweep_run_id,
        "runs": len(runs),
        "machine": machine_description(),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }
    written = comparison_report(runs, reports_dir, context)
    sweep_tracking.log_report(
        sweep_run_id, [str(written.markdown), str(written.csv), str(written.profile)]
    )
    champions = sweep_tracking.crown_champions(runs)
    return {
        "sweep_run_id": sweep_run_id,
        "rows": written.rows,
        "report": str(written.markdown),
        "table": written.table_markdown,
        "champions": champions,
    }
