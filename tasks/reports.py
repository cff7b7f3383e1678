"""The reports the compare and ablations flows write (orca.reporting), as tasks: the
comparison also becomes Prefect table and markdown artifacts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from orca.reporting.ablations import write_ablation_report
from orca.reporting.embed import inline_images
from orca.reporting.report import Report, write_report

UNCACHED: dict[str, Any] = {"persist_result": False, "cache_policy": None}


@task(name="write-report", **UNCACHED)
def comparison_report(
    runs: list[dict[str, Any]], reports_dir: str, context: dict[str, Any]
) -> Report:
    """The cross-method comparison of `runs` under `reports_dir`, and its artifacts: the
    markdown artifact carries the profile plot inlined, since the Prefect UI cannot reach a
    file beside the report."""
    written = write_report(runs, reports_dir, title="ORCA comparison", context=context)
    create_table_artifact(
        key="orca-comparison",
        table=written.rows,
        description="Mean and std of each task x method over seeds",
    )
    markdown = inline_images(written.markdown.read_text(), written.markdown.parent)
    create_markdown_artifact(key="orca-comparison-report", markdown=markdown)
    return written


@task(name="write-ablation-report", **UNCACHED)
def ablation_report(
    convergence: Sequence[Mapping[str, Any]],
    limited: Sequence[Mapping[str, Any]],
    modality: Sequence[Mapping[str, Any]],
    skipped: Mapping[str, str],
    reports_dir: str,
) -> dict[str, Any]:
    """reports_dir/ablations.md with a section and a plot per ablation."""
    path, text = write_ablation_report(convergence, limited, modality, skipped, reports_dir)
    return {"report": str(path), "text": text}
