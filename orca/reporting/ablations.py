"""Ablation report sections: alignment convergence, data-limited regime, body modality.

Each takes single-run rows and writes a Markdown section and a PNG under a directory,
atomically, returning the section text.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from orca.atomic import atomic_path


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    return plt, *plt.subplots(figsize=(6.0, 4.0), dpi=120)


def _save(plt, figure, path: Path) -> None:
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")
    plt.close(figure)


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    array = np.asarray(values, dtype=float)
    return float(array.mean()), float(array.std(ddof=1)) if len(array) > 1 else 0.0


def _cell(values: Sequence[float]) -> str:
    mean, std = _mean_std(values)
    return f"{mean:.4g} ± {std:.2g}"


def alignment_convergence(rows: Sequence[Mapping[str, Any]], directory: Path) -> str:
    """rows: {align_epochs, final_distance, value, metric}; one per run.

    Tests the paper's claim that a lower final OTDD gives a lower downstream error: reports
    the Spearman rank correlation between final distance and test metric over all runs.
    """
    from scipy.stats import spearmanr

    by_epochs: dict[int, list[Mapping[str, Any]]] = defaultdict(list)
    for row in rows:
        by_epochs[int(row["align_epochs"])].append(row)
    metric = rows[0]["metric"]
    lines = [
        "## Alignment convergence",
        "",
        f"| embedder epochs | final OTDD | test {metric} |",
        "|---|---|---|",
    ]
    for epochs in sorted(by_epochs):
        group = by_epochs[epochs]
        distance = _cell([r["final_distance"] for r in group])
        lines.append(f"| {epochs} | {distance} | {_cell([r['value'] for r in group])} |")
    distances = [r["final_distance"] for r in rows]
    values = [r["value"] for r in rows]
    rho = spearmanr(distances, values).statistic if len(set(distances)) > 1 else float("nan")
    lines += [
        "",
        f"Spearman rank correlation of final OTDD with test {metric} over {len(rows)} runs: "
        f"{rho:.3f} (positive: less distance, less error, as the paper reports).",
        "",
        "![alignment convergence](ablation-alignment.png)",
        "",
    ]
    plt, figure, axis = _figure()
    scatter = axis.scatter(distances, values, c=[r["align_epochs"] for r in rows], cmap="viridis")
    figure.colorbar(scatter, ax=axis, label="embedder epochs")
    axis.set_xlabel("final OTDD to the proxy")
    axis.set_ylabel(f"test {metric}")
    axis.set_title("Alignment convergence")
    _save(plt, figure, directory / "ablation-alignment.png")
    return "\n".join(lines)


def data_limited(rows: Sequence[Mapping[str, Any]], directory: Path) -> str:
    """rows: {train_fraction, method, value, metric}; one per run."""
    cells: dict[tuple[str, float], list[float]] = defaultdict(list)
    for row in rows:
        cells[(row["method"], float(row["train_fraction"]))].append(row["value"])
    methods = sorted({m for m, _ in cells})
    fractions = sorted({f for _, f in cells})
    metric = rows[0]["metric"]
    lines = [
        "## Data-limited regime",
        "",
        f"Test {metric} by the fraction of the training split kept.",
        "",
        "| train fraction | " + " | ".join(methods) + " |",
        "|---|" + "---|" * len(methods),
    ]
    plt, figure, axis = _figure()
    for method in methods:
        means = [_mean_std(cells.get((method, f), [np.nan]))[0] for f in fractions]
        axis.plot(fractions, means, marker="o", label=method)
    for fraction in fractions:
        entries = []
        for method in methods:
            values = cells.get((method, fraction))
            entries.append(_cell(values) if values else "—")
        lines.append(f"| {fraction:g} | " + " | ".join(entries) + " |")
    lines += ["", "![data-limited regime](ablation-data-limited.png)", ""]
    axis.set_xscale("log")
    axis.set_xlabel("fraction of the training split")
    axis.set_ylabel(f"test {metric}")
    axis.set_title("Data-limited regime")
    axis.legend()
    _save(plt, figure, directory / "ablation-data-limited.png")
    return "\n".join(lines)


def body_modality(rows: Sequence[Mapping[str, Any]], skipped: Mapping[str, str]) -> str:
    """rows: {task, backbone, value, metric}; skipped: backbone -> why it did not run."""
    cells: dict[tuple[str, str], list[float]] = defaultdict(list)
    for row in rows:
        cells[(row["task"], row["backbone"])].append(row["value"])
    lines = ["## Pretraining modality", ""]
    if cells:
        lines += ["| task | body | test metric |", "|---|---|---|"]
        for (task, backbone), values in sorted(cells.items()):
            lines.append(f"| {task} | {backbone} | {_cell(values)} |")
    for backbone, reason in skipped.items():
        lines += ["", f"**{backbone} not run:** {reason}"]
    return "\n".join(lines) + "\n"


def write_ablation_report(
    convergence: Sequence[Mapping[str, Any]],
    limited: Sequence[Mapping[str, Any]],
    modality: Sequence[Mapping[str, Any]],
    skipped: Mapping[str, str],
    directory: str | Path,
) -> tuple[Path, str]:
    """Write `directory`/ablations.md (and each section's plot) atomically; return its path
    and text."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    text = "\n".join(
        [
            "# Ablations",
            "",
            alignment_convergence(convergence, directory),
            data_limited(limited, directory),
            body_modality(modality, skipped),
        ]
    )
    path = directory / "ablations.md"
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return path, text
