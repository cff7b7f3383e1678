"""Checks on a task's arrays at the ingest boundary, with errors that name the source.

Every split of every task goes through `check_split` before it is written, so a bad file
fails at ingest, naming the file (or loader), the split, and what was expected and found.
"""

from __future__ import annotations

import numpy as np


def check_split(source: str, split: str, x: np.ndarray, y: np.ndarray, spec) -> None:
    """Raise ValueError if (x, y) cannot be the `split` split of task `spec`."""
    where = f"{source} [{split}]"
    if len(x) == 0:
        raise ValueError(f"{where}: the split is empty")
    if len(x) != len(y):
        raise ValueError(f"{where}: {len(x)} inputs but {len(y)} targets")
    if tuple(x.shape[1:]) != tuple(spec.input_shape):
        raise ValueError(
            f"{where}: inputs have shape {tuple(x.shape[1:])} per example; task "
            f"{spec.name!r} declares input_shape {tuple(spec.input_shape)}"
        )
    if not np.issubdtype(x.dtype, np.number):
        raise ValueError(f"{where}: inputs have dtype {x.dtype}; expected numbers")
    bad = np.size(x) - np.count_nonzero(np.isfinite(x))
    if bad:
        raise ValueError(f"{where}: inputs contain {bad} NaN or inf values")
    _TARGET_CHECKS[spec.output](where, np.asarray(y), spec)


def _class_ids(where: str, y: np.ndarray, spec) -> None:
    if y.ndim != 1:
        raise ValueError(f"{where}: class labels must be 1-D, got shape {y.shape}")
    if not (np.issubdtype(y.dtype, np.integer) or np.all(np.mod(y, 1) == 0)):
        raise ValueError(f"{where}: class labels must be integers, got dtype {y.dtype}")
    low, high = int(np.min(y)), int(np.max(y))
    if low < 0 or high >= spec.num_outputs:
        raise ValueError(
            f"{where}: labels out of range: found {low}..{high}, expected 0..{spec.num_outputs - 1}"
        )


def _multilabel(where: str, y: np.ndarray, spec) -> None:
    if y.shape[1:] != (spec.num_outputs,):
        raise ValueError(
            f"{where}: multi-label targets must be (N, {spec.num_outputs}), got {y.shape}"
        )
    if not np.isin(y, (0, 1)).all():
        raise ValueError(f"{where}: multi-label targets must be 0 or 1")


def _values(where: str, y: np.ndarray, spec) -> None:
    if not np.issubdtype(y.dtype, np.number):
        raise ValueError(f"{where}: targets have dtype {y.dtype}; expected numbers")
    bad = np.size(y) - np.count_nonzero(np.isfinite(y))
    if bad:
        raise ValueError(f"{where}: targets contain {bad} NaN or inf values")
    expected = _EXPECTED_TARGET_SHAPE[spec.output](spec)
    if expected is not None and tuple(y.shape[1:]) != expected:
        raise ValueError(
            f"{where}: targets have shape {tuple(y.shape[1:])} per example; task "
            f"{spec.name!r} ({spec.output}) expects {expected}"
        )


_EXPECTED_TARGET_SHAPE = {
    "regression": lambda spec: (spec.num_outputs,),
    "dense1d": lambda spec: (spec.num_outputs, spec.input_shape[-1]),
    "dense2d": lambda spec: (spec.num_outputs, *spec.input_shape[-2:]),
}
_TARGET_CHECKS = {
    "classification": _class_ids,
    "multilabel": _multilabel,
    "regression": _values,
    "dense1d": _values,
    "dense2d": _values,
}


def check_classes(
    source: str, train: np.ndarray, held_out: dict[str, np.ndarray], carve: float | None
) -> None:
    """Raise ValueError, with the class counts, if a classification task's labels cannot
    train and be validated: a single class in the training split, classes in a held-out
    split (validation, test) that training never sees, or, when the validation split is
    carved from training (`carve`, its fraction), a stratified split that is impossible
    (a class with one example, or fewer validation or training rows than classes)."""
    classes, counts = np.unique(np.asarray(train).astype(np.int64), return_counts=True)
    shown = ", ".join(f"{c}: {n}" for c, n in zip(classes.tolist(), counts.tolist(), strict=True))
    where = f"{source} [train]"
    if len(classes) < 2:
        raise ValueError(
            f"{where}: a single class in the training labels ({shown} examples); "
            "classification needs at least 2 classes"
        )
    for split, labels in held_out.items():
        values = np.asarray(labels)
        if values.dtype.kind == "f":  # non-integer labels are check_split's to report
            values = values[np.isfinite(values)]
            if np.any(values != np.round(values)):
                continue
        unseen = np.setdiff1d(np.unique(values.astype(np.int64)), classes)
        if len(unseen):
            raise ValueError(
                f"{source} [{split}]: classes {unseen.tolist()} never occur in the training "
                f"labels (training counts per class: {shown}); a model cannot learn them"
            )
    if carve is None:
        return
    rows = len(train)
    n_val = int(np.ceil(carve * rows))
    rare = classes[counts < 2]
    if len(rare):
        raise ValueError(
            f"{where}: classes {rare.tolist()} have a single example, but the validation "
            f"split is carved from training stratified by class, which needs at least 2 per "
            f"class (counts per class: {shown}); add examples or give a validation split"
        )
    if n_val < len(classes) or rows - n_val < len(classes):
        raise ValueError(
            f"{where}: {rows} examples of {len(classes)} classes; validation_fraction "
            f"{carve} leaves {n_val} for validation and {rows - n_val} for training, each "
            f"needing at least one per class; add examples, change validation_fraction, or "
            f"give a validation split"
        )
