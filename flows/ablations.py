"""The paper's ablations as one flow: alignment convergence, the data-limited regime, and
the pretraining modality (text vs vision body on a 2D and a 1D task). Writes
reports/ablations.md with a section and a plot for each; runs nest under one MLflow run
tagged orca.kind=ablation.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, runtime
from prefect.task_runners import ThreadPoolTaskRunner

from flows.sweep import run_in_sweep
from orca.config.ablation import AblationConfig
from orca.config.pipeline import PipelineConfig
from tasks import storage, sweep_tracking
from tasks.body_checks import weights_problem
from tasks.reports import ablation_report
from tasks.sweep_runs import run_pipeline


def _results(configs: list[PipelineConfig], parent: str) -> list[dict[str, Any]]:
    futures = [run_pipeline.submit(run_in_sweep, config, parent) for config in configs]
    return [future.result() for future in futures]


@flow(name="orca-ablations", validate_parameters=True, task_runner=ThreadPoolTaskRunner(1))
def ablations(config: AblationConfig, reports_dir: str = "reports") -> dict[str, Any]:
    """Run the three ablations' pipeline runs, then write their report."""
    storage.ensure_result_storage()  # the cache records' storage, where it is a URL
    parent = sweep_tracking.start_parent_run(
        "ablation", config.task, str(runtime.flow_run.id), config.to_dict()
    )
    runs = config.alignment_runs()
    convergence = [
        {
            "align_epochs": run.align.epochs,
            "final_distance": result["align_distance"]["final"],
            "value": result["value"],
            "metric": result["metric"],
        }
        for run, result in zip(runs, _results(runs, parent), strict=True)
    ]
    runs = config.limited_runs()
    limited = [
        {**result, "train_fraction": run.train_fraction}
        for run, result in zip(runs, _results(runs, parent), strict=True)
    ]
    modality, skipped = [], {}
    for backbone in (config.text_backbone, config.vision_backbone):
        problem = weights_problem(backbone) if backbone == config.vision_backbone else None
        if problem:
            skipped[backbone] = problem
            continue
        modality += _results(config.modality_runs(backbone), parent)
    report = ablation_report(convergence, limited, modality, skipped, reports_dir)
    sweep_tracking.finish_parent_run(parent, len(convergence) + len(limited), [])
    return {**report, "skipped": skipped}
