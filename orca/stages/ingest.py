"""Stage: ingest a task's data into train/validation/test Arrow splits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from orca.atomic import atomic_directory
from orca.data.arrow_io import write_split
from orca.data.tasks import get_task
from orca.data.validate import check_classes, check_split
from orca.fingerprint import fingerprint_json

SPLITS = ("train", "validation", "test")


def split_train_validation(
    x: np.ndarray, y: np.ndarray, fraction: float, seed: int, stratify: bool
) -> tuple[np.ndarray, ...]:
    """Hold out `fraction` of the training data for validation (stratified for classes)."""
    from sklearn.model_selection import train_test_split

    return tuple(
        train_test_split(
            x, y, test_size=fraction, random_state=seed, stratify=y if stratify else None
        )
    )


def subsample(
    x: np.ndarray, y: np.ndarray, fraction: float, seed: int, stratify: bool
) -> tuple[np.ndarray, np.ndarray]:
    """A seeded `fraction` of the rows (stratified for classes, at least one per class)."""
    if fraction >= 1.0:
        return x, y
    from sklearn.model_selection import train_test_split

    classes = len(np.unique(y)) if stratify else 1
    keep = max(classes, round(fraction * len(x)))
    if keep >= len(x):
        return x, y
    kept_x, _, kept_y, _ = train_test_split(
        x, y, train_size=keep, random_state=seed, stratify=y if stratify else None
    )
    return kept_x, kept_y


def ingest(
    task_name: str, out_dir: str | Path, seed: int, train_fraction: float = 1.0
) -> dict[str, Any]:
    """Write train/validation/test Arrow splits. With train_fraction < 1 only that share
    of the training split is kept (the data-limited ablation); validation and test stay."""
    spec = get_task(task_name)
    raw = spec.loader()
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
    if raw.x_val is not None and raw.y_val is not None:
        x_train, x_val, y_train, y_val = raw.x_train, raw.x_val, raw.y_train, raw.y_val
    else:
        x_train, x_val, y_train, y_val = split_train_validation(
            raw.x_train,
            raw.y_train,
            spec.validation_fraction,
            seed,
            stratify=spec.output == "classification",
        )
    stratify = spec.output == "classification"
    x_train, y_train = subsample(x_train, y_train, train_fraction, seed, stratify)
    arrays = {
        "train": (x_train, y_train),
        "validation": (x_val, y_val),
        "test": (raw.x_test, raw.y_test),
    }
    out_dir = Path(out_dir)
    splits: dict[str, dict[str, Any]] = {}
    with atomic_directory(out_dir, manifest=True) as tmp:
        for name, (x, y) in arrays.items():
            provenance = {
                "task": task_name,
                "split": name,
                "source": raw.source,
                "version": raw.version,
                "seed": seed,
                "train_fraction": train_fraction,
                "label_names": list(raw.label_names),
            }
            fingerprint = write_split(tmp / f"{name}.arrow", x, y, provenance)
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
