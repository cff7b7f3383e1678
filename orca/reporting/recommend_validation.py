"""`orca recommend --validate`'s report: RECOMMEND-VALIDATION.md and recommend-validation.json.

`analyse(outcomes)` computes orca.recommend_validation's statistics for every signal the
outcomes carry, plus the rank-average combination COMBINATION; `write_validation_report`
writes both files atomically next to the comparison (reports/ by default).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from orca.atomic import atomic_path
from orca.recommend import DEFAULT_RANK_SIGNAL
from orca.recommend_signals import SIGNALS
from orca.recommend_validation import (
    PERMUTATIONS,
    TaskOutcome,
    evaluate_signal,
    with_combination,
)

REPORT_NAME = "RECOMMEND-VALIDATION.md"
DATA_NAME = "recommend-validation.json"
COMBINATION = ("otdd_after+probe", ("otdd_after", "probe"))
DEFAULT_SIGNAL = DEFAULT_RANK_SIGNAL  # what `orca recommend` ranks by unless told otherwise
ALPHA = 0.05


def analyse(outcomes: Sequence[TaskOutcome]) -> list[dict[str, Any]]:
    """Every signal's statistics, in orca.recommend_signals' order, the combination last."""
    name, parts = COMBINATION
    outcomes = [with_combination(outcome, name, parts) for outcome in outcomes]
    present = {signal for outcome in outcomes for signal in outcome.signals}
    order = [s for s in SIGNALS.names() if s in present] + ([name] if name in present else [])
    return [evaluate_signal(outcomes, signal) for signal in order]


def _number(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def verdict(statistics: Sequence[Mapping[str, Any]]) -> list[str]:
    """Plain sentences on the default signal and the best other one, from the numbers."""
    by_name = {row["signal"]: row for row in statistics}
    lines = []
    default = by_name.get(DEFAULT_SIGNAL)
    if default is not None and default["pooled_rho"] is not None:
        rho, p = default["pooled_rho"], default["pooled_p_value"]
        strong = rho is not None and p is not None and p <= ALPHA and rho > 0
        lines.append(
            f"The default signal ({DEFAULT_SIGNAL}) "
            + (
                f"predicts the test error: pooled ρ = {rho:.2f}, p = {p:.3g}."
                if strong
                else "is a weak predictor of the test error on these tasks: pooled ρ = "
                f"{_number(rho)}, p = {_number(p, 3)} (not significant at α = {ALPHA})."
            )
            + f" Its top pick was the best candidate in {default['top1_hits']} of "
            f"{len(default['per_task'])} tasks (a random pick: "
            f"{_number((default['top1_chance'] or 0) * len(default['per_task']), 1)})."
        )
    backwards = [
        row["signal"]
        for row in statistics
        if row.get("pooled_p_value_below") is not None and row["pooled_p_value_below"] <= ALPHA
    ]
    if backwards:
        lines.append(
            f"Pointing the wrong way at α = {ALPHA} (a lower signal went with a higher test "
            f"error): {', '.join(backwards)}."
        )
    ranked = sorted(
        (row for row in statistics if row["pooled_rho"] is not None),
        key=lambda row: -row["pooled_rho"],
    )
    if ranked and ranked[0]["signal"] != DEFAULT_SIGNAL:
        best = ranked[0]
        significant = best["pooled_p_value"] is not None and best["pooled_p_value"] <= ALPHA
        lines.append(
            f"The best-correlated signal here is {best['signal']} (pooled ρ = "
            f"{best['pooled_rho']:.2f}, p = {best['pooled_p_value']:.3g}, top-1 "
            f"{best['top1_hits']} of {len(best['per_task'])})"
            + (
                "."
                if significant
                else f"; it is not significant at α = {ALPHA} either, so no signal is "
                "established as better on this evidence."
            )
        )
    return lines


def markdown(
    outcomes: Sequence[TaskOutcome],
    statistics: Sequence[Mapping[str, Any]],
    context: Mapping[str, Any],
    failures: Sequence[str] = (),
) -> str:
    signals = [row["signal"] for row in statistics]
    lines = ["# Does `orca recommend` predict the fine-tuned result?", ""]
    lines += [f"- **{key}:** {value}" for key, value in context.items()]
    lines += [
        "",
        "For every task, every candidate's cheap signals were measured (`orca recommend`), then "
        "the full pipeline ran for every candidate. Lower is better for every signal and every "
        "error. ρ: Spearman's rank correlation between a signal and the test error over a "
        "task's candidates; pooled ρ: its mean over tasks (the tasks' metrics do not share a "
        "scale, so only ranks are pooled); p: one-sided permutation tests of pooled ρ > 0 "
        f"and, the other tail, ρ < 0 ({PERMUTATIONS} within-task shuffles); top-1: tasks "
        "where the signal's pick had the lowest test error (chance: what a random pick would "
        "get); regret: the pick's error above the best, as a fraction of the task's range "
        "(0 = best, 1 = worst).",
        "",
        "## Verdict",
        "",
        *(f"- {line}" for line in verdict(statistics)),
        "",
        "## Signals",
        "",
        "| signal | pooled ρ | p (ρ > 0) | p (ρ < 0) | tasks with ρ | top-1 | chance | "
        "mean regret |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in statistics:
        tasks = len(row["per_task"])
        lines.append(
            f"| {row['signal']} | {_number(row['pooled_rho'])} | "
            f"{_number(row['pooled_p_value'], 3)} | "
            f"{_number(row.get('pooled_p_value_below'), 3)} | {row['tasks_with_rho']} | "
            f"{row['top1_hits']}/{tasks} | {_number((row['top1_chance'] or 0) * tasks, 1)}"
            f"/{tasks} | {_number(row['mean_regret'])} |"
        )
    lines += ["", "## ρ per task", "", "| task | " + " | ".join(signals) + " |"]
    lines.append("|---|" + "---:|" * len(signals))
    for outcome in outcomes:
        cells = [_number(row["per_task"].get(outcome.task)) for row in statistics]
        lines.append(f"| {outcome.task} | " + " | ".join(cells) + " |")
    lines += ["", "## Candidates", ""]
    raw = [s for s in signals if all(s in o.signals for o in outcomes)]
    for outcome in outcomes:
        lines += [
            f"### {outcome.task} ({outcome.metric}, lower is better)",
            "",
            "| candidate | test error | " + " | ".join(raw) + " |",
            "|---|---:|" + "---:|" * len(raw),
        ]
        best = min(outcome.errors)
        for index, candidate in enumerate(outcome.candidates):
            error = outcome.errors[index]
            shown = f"**{error:.4g}**" if error == best else f"{error:.4g}"
            values = " | ".join(f"{outcome.signals[s][index]:.4g}" for s in raw)
            lines.append(f"| {candidate} | {shown} | {values} |")
        lines.append("")
    if failures:
        lines += ["## Not measured", "", *(f"- {failure}" for failure in failures), ""]
    return "\n".join(lines).rstrip() + "\n"


def write_validation_report(
    outcomes: Sequence[TaskOutcome],
    reports_dir: str | Path,
    context: Mapping[str, Any],
    failures: Sequence[str] = (),
) -> dict[str, Any]:
    """Both files, atomically; returns their paths and the statistics."""
    statistics = analyse(outcomes)
    directory = Path(reports_dir)
    report, data = directory / REPORT_NAME, directory / DATA_NAME
    with atomic_path(report) as tmp:
        tmp.write_text(markdown(outcomes, statistics, context, failures))
    payload = {
        "context": dict(context),
        "statistics": statistics,
        "outcomes": [asdict(outcome) for outcome in outcomes],
        "failures": list(failures),
    }
    with atomic_path(data) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, default=list))
    return {"report": str(report), "data": str(data), "statistics": statistics}


def rebuild(data_path: str | Path, reports_dir: str | Path | None = None) -> dict[str, Any]:
    """The report again from a validation's recommend-validation.json (its outcomes and
    context), with this code's statistics, into `reports_dir` (default: beside the data)."""
    data = json.loads(Path(data_path).read_text())
    outcomes = [
        TaskOutcome(o["task"], o["metric"], tuple(o["candidates"]), o["signals"], o["errors"])
        for o in data["outcomes"]
    ]
    directory = Path(reports_dir) if reports_dir is not None else Path(data_path).parent
    return write_validation_report(outcomes, directory, data["context"], data["failures"])
