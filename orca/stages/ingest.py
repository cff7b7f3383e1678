"""Stage: ingest a task's data into train/validation/test Arrow splits.

Rows are chosen by index (the validation hold-out, the data-limited subsample), so a task's
per-example context (RawTask.context: which protein a tile comes from, an ignore mask, ...)
follows its rows into each split file and stays aligned with them. The task's metric is
checked against that context first: a metric that needs a field some split lacks fails here,
before anything is written, naming the split and the field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from orca.atomic import atomic_directory
from orca.data.arrow_io import write_split
from orca.data.tasks import RawTask, TaskSpec, get_task
from orca.data.validate import check_classes, check_split
from orca.fingerprint import fingerprint_json
from orca.metrics import METRICS

SPLITS = ("train", "validation", "test")
Context = dict[str, np.ndarray]  # field -> one row per example (orca.metrics_context)


def train_validation_indices(
    y: np.ndarray, fraction: float, seed: int, stratify: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of the training and the held-out validation rows: `fraction` of the
    rows for validation, seeded (stratified by `y` for classes)."""
    from sklearn.model_selection import train_test_split

    rows = np.arange(len(y))
    train, validation = train_test_split(
        rows, test_size=fraction, random_state=seed, stratify=y if stratify else None
    )
    return train, validation


def subsample_indices(y: np.ndarray, fraction: float, seed: int, stratify: bool) -> np.ndarray:
    """Row indices of a seeded `fraction` of the rows (stratified for classes, at least one
    per class); every row, in order, when `fraction` >= 1 or it would keep them all."""
    rows = np.arange(len(y))
    if fraction >= 1.0:
        return rows
    from sklearn.model_selection import train_test_split

    classes = len(np.unique(y)) if stratify else 1
    keep = max(classes, round(fraction * len(y)))
    if keep >= len(y):
        return rows
    kept, _ = train_test_split(
        rows, train_size=keep, random_state=seed, stratify=y if stratify else None
    )
    return kept


def split_train_validation(
    x: np.ndarray, y: np.ndarray, fraction: float, seed: int, stratify: bool
) -> tuple[np.ndarray, ...]:
    """(x_train, x_val, y_train, y_val): `fraction` of the rows held out for validation."""
    train, validation = train_validation_indices(np.asarray(y), fraction, seed, stratify)
    x, y = np.asarray(x), np.asarray(y)
    return x[train], x[validation], y[train], y[validation]


def subsample(
    x: np.ndarray, y: np.ndarray, fraction: float, seed: int, stratify: bool
) -> tuple[np.ndarray, np.ndarray]:
    """A seeded `fraction` of the rows (stratified for classes, at least one per class)."""
    if fraction >= 1.0:
        return x, y
    kept = subsample_indices(np.asarray(y), fraction, seed, stratify)
    return np.asarray(x)[kept], np.asarray(y)[kept]


def _rows(x: np.ndarray, y: np.ndarray, context: Context, index: np.ndarray):
    return x[index], y[index], {name: values[index] for name, values in context.items()}


def check_metric_context(spec: TaskSpec, raw: RawTask) -> None:
    """ValueError if the task's metric needs a context field that a split will lack (the
    validation split carved from train takes train's context)."""
    needed = METRICS.get(spec.metric).context
    if not needed:
        return
    sources = {"train": "train", "test": "test"}
    sources["validation"] = "validation" if raw.x_val is not None else "train"
    for split, source in sources.items():
        missing = [name for name in needed if name not in raw.context.get(source, {})]
        if missing:
            raise ValueError(
                f"{raw.source} [{split}]: task {spec.name!r}'s metric {spec.metric!r} needs "
                f"the per-example context {missing}, which the task's loader does not give "
                f"for its {source} split (it gives "
                f"{sorted(raw.context.get(source, {})) or 'none'}); give it "
                "(RawTask.context) or choose a metric that needs none"
            )


def _check(spec: TaskSpec, raw: RawTask) -> None:
    check_split(raw.source, "train", np.asarray(raw.x_train), np.asarray(raw.y_train), spec)
    if spec.output == "classification":  # before the held-out splits' label range checks
        held_out = {"validation": raw.y_val, "test": raw.y_test}
        check_classes(
            raw.source,
            np.asarray(raw.y_train),
            {k: np.asarray(v) for k, v in held_out.items() if v is not None},
            None if raw.x_val is not None else spec.validation_fraction,
        )
    for name, x, y in (("validation", raw.x_val, raw.y_val), ("test", raw.x_test, raw.y_test)):
        if x is not None:
            check_split(raw.source, name, np.asarray(x), np.asarray(y), spec)
    check_metric_context(spec, raw)


def split_rows(
    spec: TaskSpec, raw: RawTask, seed: int, train_fraction: float
) -> dict[str, tuple[np.ndarray, np.ndarray, Context]]:
    """Each split's (x, y, context), the context's rows selected with the examples'."""
    stratify = spec.output == "classification"
    x_train, y_train = np.asarray(raw.x_train), np.asarray(raw.y_train)
    train = (x_train, y_train, raw.context.get("train", {}))
    if raw.x_val is not None and raw.y_val is not None:
        validation = (
            np.asarray(raw.x_val),
            np.asarray(raw.y_val),
            raw.context.get("validation", {}),
        )
    else:
        kept, held_out = train_validation_indices(y_train, spec.validation_fraction, seed, stratify)
        train, validation = _rows(*train, kept), _rows(*train, held_out)
    if train_fraction < 1.0:
        train = _rows(*train, subsample_indices(train[1], train_fraction, seed, stratify))
    test = (np.asarray(raw.x_test), np.asarray(raw.y_test), raw.context.get("test", {}))
    return {"train": train, "validation": validation, "test": test}


def ingest(
    task_name: str, out_dir: str | Path, seed: int, train_fraction: float = 1.0
) -> dict[str, Any]:
    """Write train/validation/test Arrow splits. With train_fraction < 1 only that share
    of the training split is kept (the data-limited ablation); validation and test stay."""
    spec = get_task(task_name)
    raw = spec.loader()
    _check(spec, raw)
    arrays = split_rows(spec, raw, seed, train_fraction)
    out_dir = Path(out_dir)
    splits: dict[str, dict[str, Any]] = {}
    with atomic_directory(out_dir, manifest=True) as tmp:
        for name, (x, y, context) in arrays.items():
            provenance = {
                "task": task_name,
                "split": name,
                "source": raw.source,
                "version": raw.version,
                "seed": seed,
                "train_fraction": train_fraction,
                "label_names": list(raw.label_names),
            }
            fingerprint = write_split(tmp / f"{name}.arrow", x, y, provenance, context)
            splits[name] = {
                "path": str(out_dir / f"{name}.arrow"),
                "rows": len(x),
                "fingerprint": fingerprint,
            }
    return {
        "task": task_name,
        "seed": seed,
        "splits": splits,
        "fingerprint": fingerprint_json({k: v["fingerprint"] for k, v in splits.items()}),
    }
