"""The paper's ablations as one flow: alignment convergence, the data-limited regime, and
the pretraining modality (text vs vision body on a 2D task). Writes reports/ablations.md
with a section and a plot for each; runs nest under one MLflow run tagged orca.kind=ablation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, runtime, task
from prefect.task_runners import ThreadPoolTaskRunner

from flows.sweep import run_pipeline
from orca.atomic import atomic_path
from orca.config.ablation import AblationConfig
from orca.model.bodies import BodyWeightsError, MissingWeightsError, load_body
from orca.reporting import ablations as sections
from tasks import storage, sweep_tracking


@task(name="check-vision-weights", persist_result=False, cache_policy=None)
def vision_weights_missing(backbone: str) -> str | None:
    """Why the vision body cannot run pretrained here, or None when its weights load: none
    to be found, or a weights file that is damaged or does not fit the architecture."""
    try:
        load_body(backbone)
    except (MissingWeightsError, FileNotFoundError) as error:
        return f"no pretrained weights for {backbone} on this machine ({error})"
    except (BodyWeightsError, OSError) as error:
        return f"the pretrained weights for {backbone} are corrupt or do not fit it ({error})"
    return None


def _results(configs, parent: str) -> list[dict[str, Any]]:
    futures = [run_pipeline.submit(config, parent) for config in configs]
    return [future.result() for future in futures]


@flow(name="orca-ablations", validate_parameters=True, task_runner=ThreadPoolTaskRunner(1))
def ablations(config: AblationConfig, reports_dir: str = "reports") -> dict[str, Any]:
    storage.ensure_result_storage()  # the cache records' storage, where it is a URL
    parent = sweep_tracking.start_parent_run(
        "ablation", config.task, str(runtime.flow_run.id), config.to_dict()
    )
    directory = Path(reports_dir)
    directory.mkdir(parents=True, exist_ok=True)

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
        reason = vision_weights_missing(backbone) if backbone == config.vision_backbone else None
        if reason:
            skipped[backbone] = reason
            continue
        modality += _results(config.modality_runs(backbone), parent)
    text = "\n".join(
        [
            "# Ablations",
            "",
            sections.alignment_convergence(convergence, directory),
            sections.data_limited(limited, directory),
            sections.body_modality(modality, skipped),
        ]
    )
    path = directory / "ablations.md"
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    sweep_tracking.finish_parent_run(parent, len(convergence) + len(limited), [])
    return {"report": str(path), "skipped": skipped, "text": text}
