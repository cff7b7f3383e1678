"""Per-task comparison of methods over seeds: mean ± std, the best marked, win counts.

Input rows are single runs: {task, method, seed, metric, value, lower_is_better}. Each
(task, method) is summarised over its seeds; the best method per task is the one with the
best mean in the metric's direction, and every method tied with it wins too.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

RUN_FIELDS = ("task", "method", "seed", "metric", "value", "lower_is_better")


@dataclass(frozen=True)
class SummaryRow:
    task: str
    method: str
    metric: str
    mean: float
    std: float  # sample standard deviation (ddof=1); 0 for a single seed
    n_seeds: int
    lower_is_better: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarise(runs: Iterable[Mapping[str, Any]]) -> list[SummaryRow]:
    """Group runs by (task, method); raise ValueError naming a malformed run."""
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = defaultdict(list)
    for run in runs:
        missing = [f for f in RUN_FIELDS if f not in run]
        if missing:
            raise ValueError(f"run {dict(run)!r} lacks field(s) {missing}")
        groups[(run["task"], run["method"])].append(run)
    rows = []
    for (task, method), group in sorted(groups.items()):
        metrics = {run["metric"] for run in group}
        if len(metrics) != 1:
            raise ValueError(f"task {task!r}, method {method!r}: mixed metrics {sorted(metrics)}")
        values = np.array([float(run["value"]) for run in group])
        rows.append(
            SummaryRow(
                task=task,
                method=method,
                metric=metrics.pop(),
                mean=float(values.mean()),
                std=float(values.std(ddof=1)) if len(values) > 1 else 0.0,
                n_seeds=len(values),
                lower_is_better=bool(group[0]["lower_is_better"]),
            )
        )
    return rows


def best_methods(summary: Iterable[SummaryRow]) -> dict[str, list[str]]:
    """task -> the methods with the best mean (several when tied)."""
    by_task: dict[str, list[SummaryRow]] = defaultdict(list)
    for row in summary:
        by_task[row.task].append(row)
    best = {}
    for task, rows in by_task.items():
        sign = 1.0 if rows[0].lower_is_better else -1.0
        top = min(sign * row.mean for row in rows)
        best[task] = sorted(row.method for row in rows if np.isclose(sign * row.mean, top))
    return best


def win_counts(summary: list[SummaryRow]) -> dict[str, int]:
    """method -> number of tasks on which it is (possibly jointly) best."""
    counts = {row.method: 0 for row in summary}
    for methods in best_methods(summary).values():
        for method in methods:
            counts[method] += 1
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


@dataclass(frozen=True)
class GridRow:
    """One task's row of the comparison: its metric with the direction arrow, and per
    method the 'mean ± std' text and whether it is (jointly) best; None where the method
    has no run on the task."""

    task: str
    metric: str
    cells: list[tuple[str, bool] | None]


def comparison_grid(
    summary: list[SummaryRow], methods: list[str] | None = None
) -> tuple[list[str], list[GridRow], dict[str, int]]:
    """(methods, one row per task, wins per method): the comparison table's content, which
    markdown_table here and the CLI's rich table render."""
    methods = methods or sorted({row.method for row in summary})
    cells = {(row.task, row.method): row for row in summary}
    best = best_methods(summary)
    rows = []
    for task in sorted(best):
        first = next(row for row in summary if row.task == task)
        arrow = "↓" if first.lower_is_better else "↑"
        entries: list[tuple[str, bool] | None] = []
        for method in methods:
            row = cells.get((task, method))
            text = None if row is None else f"{row.mean:.4g} ± {row.std:.2g}"
            entries.append(None if text is None else (text, method in best[task]))
        rows.append(GridRow(task, f"{first.metric} {arrow}", entries))
    return methods, rows, win_counts(summary)


def markdown_table(summary: list[SummaryRow], methods: list[str] | None = None) -> str:
    """Tasks as rows, methods as columns, 'mean ± std' cells, the best bold; the metric
    column shows the direction (↓ lower is better, ↑ higher is better)."""
    methods, rows, wins = comparison_grid(summary, methods)
    lines = [
        "| task | metric | " + " | ".join(methods) + " |",
        "|---|---|" + "---|" * len(methods),
    ]
    for row in rows:
        entries = [
            "—" if cell is None else (f"**{cell[0]}**" if cell[1] else cell[0])
            for cell in row.cells
        ]
        lines.append(f"| {row.task} | {row.metric} | " + " | ".join(entries) + " |")
    lines.append("| **wins** | | " + " | ".join(str(wins.get(m, 0)) for m in methods) + " |")
    return "\n".join(lines) + "\n"


def csv_text(summary: list[SummaryRow]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(SummaryRow.__dataclass_fields__))
    writer.writeheader()
    for row in summary:
        writer.writerow(row.to_dict())
    return buffer.getvalue()
