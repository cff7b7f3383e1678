"""Inputs and predictions as .npz files, for `orca predict`.

    INPUT.npz   x  (N, *input_shape)  numbers (cast to float32), finite
                y  (N, ...)           optional targets, as the task's metric takes them
                context.<name>        optional per-example context for a metric that needs
                                      it (orca.metrics_context: protein, row_start,
                                      col_start, length (N,) integers; ignore (N, ...) 0/1;
                                      clip (N,) integers), one row per row of x
    PREDS.npz   predictions  (N, *output_shape) float32, what the evaluate stage scores
                labels       (N,) int64, classification only: the argmax of the logits

Every problem raises InputFileError naming the file, the key, what was found and what was
expected.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from orca.atomic import atomic_path

INPUTS_KEY = "x"
TARGETS_KEY = "y"
CONTEXT_PREFIX = "context."  # a context field's key: CONTEXT_PREFIX + its name


class InputFileError(ValueError):
    """An input file is missing, unreadable, or does not fit the model."""


def read_inputs(
    path: str | Path, input_shape: tuple[int, ...] | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """x as float32 (N, *input_shape) and y (or None) from `path`; `input_shape` None
    checks no shape (a model without a signature)."""
    path = Path(path)
    expected = _expected(input_shape)
    if not path.is_file():
        raise InputFileError(f"{path}: no such file; expected an .npz file with {expected}")
    try:
        archive = np.load(path, allow_pickle=False)
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as err:
        raise InputFileError(
            f"{path}: not an .npz archive ({err}); expected one written by numpy.savez with "
            f"{expected}"
        ) from err
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise InputFileError(f"{path}: a single .npy array, not an .npz archive with {expected}")
    with archive:
        keys = sorted(archive.files)
        if INPUTS_KEY not in keys:
            raise InputFileError(
                f"{path}: no array {INPUTS_KEY!r} (found: {', '.join(keys) or 'none'}); "
                f"expected {expected}"
            )
        x = archive[INPUTS_KEY]
        y = archive[TARGETS_KEY] if TARGETS_KEY in keys else None
    return check_inputs(path, x, input_shape), check_targets(path, y, len(x))


def read_context(path: str | Path, rows: int) -> dict[str, np.ndarray]:
    """The `context.<name>` arrays of an INPUT.npz that read_inputs accepted, checked: known
    fields, one row per example (`rows`), integer indices or 0/1 masks; {} when none."""
    from orca.metrics_context import check_context

    with np.load(path, allow_pickle=False) as archive:
        found = {
            key.removeprefix(CONTEXT_PREFIX): archive[key]
            for key in archive.files
            if key.startswith(CONTEXT_PREFIX)
        }
    try:
        return check_context(str(path), found, rows)
    except ValueError as err:  # an unknown field, a wrong row count or kind of values
        raise InputFileError(f"{path}: a {CONTEXT_PREFIX}<name> array does not fit: {err}") from err


def check_inputs(source: object, x: np.ndarray, input_shape: tuple[int, ...] | None) -> np.ndarray:
    if x.dtype.kind not in "biuf":
        raise InputFileError(f"{source}: {INPUTS_KEY} holds {x.dtype} values; expected numbers")
    if input_shape is not None and (x.ndim != len(input_shape) + 1 or x.shape[1:] != input_shape):
        raise InputFileError(
            f"{source}: {INPUTS_KEY} has shape {x.shape}; the model's signature expects "
            f"{_shape(input_shape)}"
        )
    if len(x) == 0:
        raise InputFileError(f"{source}: {INPUTS_KEY} has no rows")
    x = np.ascontiguousarray(x, dtype=np.float32)
    if not np.isfinite(x).all():
        raise InputFileError(f"{source}: {INPUTS_KEY} holds NaN or infinite values")
    return x


def check_targets(source: object, y: np.ndarray | None, rows: int) -> np.ndarray | None:
    if y is None:
        return None
    if y.dtype.kind not in "biuf" or y.ndim == 0:
        raise InputFileError(
            f"{source}: {TARGETS_KEY} has dtype {y.dtype} and shape {y.shape}; expected "
            "numbers, one row per example"
        )
    if len(y) != rows:
        raise InputFileError(f"{source}: {INPUTS_KEY} has {rows} rows but {TARGETS_KEY} {len(y)}")
    return y.astype(np.int64) if y.dtype.kind in "biu" else y


def write_predictions(path: str | Path, arrays: dict[str, np.ndarray]) -> Path:
    """Write `arrays` to the .npz file `path` atomically (numpy adds no suffix)."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **arrays)
    return path


def _shape(input_shape: tuple[int, ...]) -> str:
    return f"(N, {', '.join(str(n) for n in input_shape)})"


def _expected(input_shape: tuple[int, ...] | None) -> str:
    shape = _shape(input_shape) if input_shape is not None else "(N, ...)"
    return f"{INPUTS_KEY!r} {shape} and optionally {TARGETS_KEY!r} (N, ...)"
