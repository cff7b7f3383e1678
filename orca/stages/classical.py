"""Stage: a classical baseline, fitted on train, selected on validation, scored on test once.

The whole run of a classical method (orca.methods, family "classical") after ingest. It
reads the ingest stage's train and validation splits, lets orca.classical.selection try
the model's hyperparameter grid, and only then reads the test split, for the one
prediction that gives the test metric. The reference it returns carries the same result
keys as the evaluate stage's (metric, value, lower_is_better, test_rows) plus the chosen
hyperparameters, their validation score and every candidate's. The selection is written to
`selection.json` in the stage's directory, the run's record on disk (the fitted estimator
is not kept: refitting it costs seconds).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from orca.atomic import atomic_directory
from orca.classical.selection import CandidateCallback, score_test, select
from orca.data.arrow_io import read_split
from orca.data.tasks import get_task
from orca.fingerprint import fingerprint_json

RECORD_FILE = "selection.json"


def fit_classical(
    task_name: str,
    model: str,
    dataset: dict[str, Any],
    seed: int,
    out_dir: str | Path,
    n_jobs: int = 1,
    on_candidate: CandidateCallback | None = None,
) -> dict[str, Any]:
    """Select classical `model` for the task on the ingested `dataset`, then score test."""
    spec = get_task(task_name)
    splits = dataset["splits"]
    train = read_split(splits["train"]["path"])
    validation = read_split(splits["validation"]["path"])
    selection = select(
        model,
        spec.output,
        spec.metric,
        spec.num_outputs,
        (train.x, train.y),
        (validation.x, validation.y),
        seed,
        n_jobs=n_jobs,
        on_candidate=on_candidate,
        validation_context=validation.context,
    )
    test = read_split(splits["test"]["path"])  # the only read of the test split
    value = score_test(selection, (test.x, test.y), test.context)
    record = {
        "task": task_name,
        "model": model,
        "seed": seed,
        "metric": spec.metric,
        "value": value,
        "lower_is_better": spec.lower_is_better,
        "train_rows": len(train.y),
        "validation_rows": len(validation.y),
        "test_rows": len(test.y),
        "hyperparameters": selection.params,
        "validation_value": selection.validation_value,
        "candidates": [
            {"hyperparameters": c.params, "validation_value": c.validation_value}
            for c in selection.candidates
        ],
        "dataset": dataset["fingerprint"],
    }
    out_dir = Path(out_dir)
    with atomic_directory(out_dir, manifest=True) as tmp:
        (tmp / RECORD_FILE).write_text(json.dumps(record, indent=2, sort_keys=True))
    return {**record, "path": str(out_dir / RECORD_FILE), "fingerprint": fingerprint_json(record)}
