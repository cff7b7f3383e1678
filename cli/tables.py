"""The human output of `orca tasks`, `orca compare` and `orca demo`: rich tables on stdout.

On a terminal a table fits the window; written to a file or a pipe it keeps its natural
width, so that each row stays on one line for grep and friends.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table


def print_table(table: Table, legend: str = "", console: Console | None = None) -> None:
    """`table` on stdout, then the `legend` line (if any)."""
    console = console if console is not None else Console(soft_wrap=False)
    if not console.is_terminal:  # a file or a pipe: as wide as the table wants
        unbounded = console.options.update(max_width=10_000)
        console.width = max(console.width, Measurement.get(console, unbounded, table).maximum)
    console.print(table)
    if legend:
        console.print(legend, highlight=False)


METRIC_LEGEND = "↓ lower is better, ↑ higher is better"
COMPARISON_LEGEND = f"mean ± std over seeds; * the best method per task; {METRIC_LEGEND}"


def tasks_table(described: Sequence[dict[str, Any]]) -> Table:
    """One row per registered task (TaskSpec.describe() dicts)."""
    table = Table()
    for column in ("task", "modality", "output", "metric", "description"):
        table.add_column(column, no_wrap=column != "description")
    for task in described:
        arrow = "↓" if task["lower_is_better"] else "↑"
        table.add_row(
            escape(task["name"]),
            task["modality"],
            task["output"],
            f"{task['metric']} {arrow}",
            escape(task["description"]),
        )
    return table


def comparison_table(rows: Sequence[dict[str, Any]]) -> Table:
    """Tasks as rows, methods as columns, mean ± std over seeds in each cell, the best method
    of each task (several when tied) in bold with a *, and the wins per method: the report's
    table (orca.reporting.comparison.markdown_table) for the terminal."""
    from orca.reporting.comparison import SummaryRow, comparison_grid

    methods, grid, wins = comparison_grid([SummaryRow(**row) for row in rows])
    table = Table()
    table.add_column("task", no_wrap=True)
    table.add_column("metric", no_wrap=True)
    for method in methods:
        table.add_column(escape(method), justify="right", no_wrap=True)
    for row in grid:
        entries = [
            "—" if cell is None else (f"[bold green]{cell[0]} *[/]" if cell[1] else cell[0])
            for cell in row.cells
        ]
        table.add_row(escape(row.task), row.metric, *entries)
    table.add_section()
    table.add_row("wins", "", *(str(wins.get(method, 0)) for method in methods), style="bold")
    return table
