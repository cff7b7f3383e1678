"""The comparison report as files: Markdown, CSV and the performance-profile PNG.

Each file is written atomically, so a crash never leaves a half-written report.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orca.atomic import atomic_path
from orca.reporting.comparison import csv_text, markdown_table, summarise, win_counts
from orca.reporting.findings import check_findings, findings_markdown
from orca.reporting.profile import plot_profile
from orca.reporting.significance import SignificanceConfig


@dataclass(frozen=True)
class Report:
    markdown: Path
    csv: Path
    profile: Path
    table_markdown: str
    rows: list[dict[str, Any]]  # one per (task, method): the summary rows


def write_report(
    runs: Sequence[Mapping[str, Any]],
    directory: str | Path,
    *,
    title: str,
    context: Mapping[str, Any],
    prefix: str = "comparison",
) -> Report:
    """Summarise single runs into the comparison files under `directory`.

    `context` (e.g. sweep run id, machine, date) is listed at the top of the Markdown.
    The paper's findings are decided at SignificanceConfig()'s level (alpha = 0.05).
    """
    level = SignificanceConfig()
    directory = Path(directory)
    summary = summarise(runs)
    table = markdown_table(summary)
    wins = win_counts(summary)
    paths = {
        "markdown": directory / f"{prefix}.md",
        "csv": directory / f"{prefix}.csv",
        "profile": directory / f"{prefix}-profile.png",
    }
    lines = [f"# {title}", ""]
    lines += [f"- **{key}:** {value}" for key, value in context.items()]
    lines += [
        "",
        "Mean ± standard deviation over seeds; the best method per task is bold; ↓ marks a",
        "metric where lower is better.",
        "",
        table,
        "Wins per method (ties count for each): "
        + ", ".join(f"{method} {count}" for method, count in wins.items()),
        "",
        f"![performance profile]({paths['profile'].name})",
        "",
        "## The paper's findings on this suite",
        "",
        findings_markdown(check_findings(runs, level), level),
    ]
    with atomic_path(paths["csv"]) as tmp:
        tmp.write_text(csv_text(summary))
    with atomic_path(paths["profile"]) as tmp:
        plot_profile(summary, tmp.with_suffix(".png"), title="Performance profile")
        tmp.with_suffix(".png").rename(tmp)
    with atomic_path(paths["markdown"]) as tmp:
        tmp.write_text("\n".join(lines))
    return Report(
        markdown=paths["markdown"],
        csv=paths["csv"],
        profile=paths["profile"],
        table_markdown=table,
        rows=[row.to_dict() for row in summary],
    )
