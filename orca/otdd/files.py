"""Labelled datasets stored as `.npz` files, checked at the boundary.

A file holds two arrays:
    X (n, d)   real features (any float or integer dtype; float32 and float64 are returned
               as they are, without a copy, other dtypes as float64)
    y (n,)     integer class labels (integer dtype, or floats that are all whole numbers;
               returned as int64), with at least two distinct classes

Every problem raises `DatasetFileError` (a ValueError) whose message starts with the file
name and says what is wrong and what was found, so that a command line can print it as is.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import NamedTuple

import numpy as np

FEATURES_KEY = "X"
LABELS_KEY = "y"
_CHECK_ELEMENTS = 1 << 22  # values per block of the finiteness check


class DatasetFileError(ValueError):
    """A dataset file is missing, unreadable, or does not hold valid (X, y)."""


class LabelledArrays(NamedTuple):
    features: np.ndarray  # (n, d) float32 or float64
    labels: np.ndarray  # (n,) int64
    path: Path


def _fail(path: Path, problem: str) -> DatasetFileError:
    return DatasetFileError(f"{path}: {problem}")


def _read_array(path: Path, archive: np.lib.npyio.NpzFile, key: str) -> np.ndarray:
    if key not in archive.files:
        found = ", ".join(repr(k) for k in archive.files) or "none"
        raise _fail(path, f"no array {key!r}; keys found: {found}")
    try:
        return archive[key]
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as error:
        # e.g. an object array, which would need pickle to load
        raise _fail(path, f"array {key!r} cannot be read: {error}") from None


def _check_features(path: Path, x: np.ndarray) -> np.ndarray:
    if x.ndim != 2:
        raise _fail(path, f"{FEATURES_KEY} must be 2-D (points, dim); got shape {x.shape}")
    if x.dtype == np.bool_ or x.dtype.kind not in "fiu":
        raise _fail(path, f"{FEATURES_KEY} must hold real numbers; got dtype {x.dtype}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise _fail(path, f"{FEATURES_KEY} is empty; got shape {x.shape}")
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float64)
    # Checked a block of rows at a time: a mask of the whole array would add n x d bytes to
    # the peak memory of a 100k x 768 file.
    rows = max(1, _CHECK_ELEMENTS // x.shape[1])
    bad = sum(
        int(np.count_nonzero(~np.isfinite(x[start : start + rows])))
        for start in range(0, len(x), rows)
    )
    if bad:
        raise _fail(path, f"{FEATURES_KEY} has {bad} non-finite value(s) (NaN or infinity)")
    return x


def _check_labels(path: Path, y: np.ndarray) -> np.ndarray:
    if y.ndim != 1:
        raise _fail(path, f"{LABELS_KEY} must be 1-D (points,); got shape {y.shape}")
    if y.dtype.kind in "iu":
        return y.astype(np.int64)
    if y.dtype.kind == "f":
        whole = np.isfinite(y) & (y == np.round(y))
        bad = int(np.count_nonzero(~whole))
        if bad:
            example = y[~whole][0]
            raise _fail(
                path,
                f"{LABELS_KEY} must hold integer class labels; "
                f"{bad} value(s) are not whole numbers (e.g. {example!r})",
            )
        return y.astype(np.int64)
    raise _fail(path, f"{LABELS_KEY} must hold integer class labels; got dtype {y.dtype}")


def load_labelled(path: str | os.PathLike[str]) -> LabelledArrays:
    """Read and check one `.npz` dataset; raises `DatasetFileError` naming the file."""
    path = Path(path)
    if not path.exists():
        raise _fail(path, "no such file")
    if not path.is_file():
        raise _fail(path, "not a regular file")
    try:
        loaded = np.load(path, allow_pickle=False)
    except (ValueError, OSError, zipfile.BadZipFile, EOFError):
        raise _fail(path, "not an .npz archive (expected one written by numpy.savez)") from None
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise _fail(path, "not an .npz archive: it holds a single .npy array, not X and y")
    with loaded as archive:
        x = _read_array(path, archive, FEATURES_KEY)
        y = _read_array(path, archive, LABELS_KEY)
    x = _check_features(path, x)
    y = _check_labels(path, y)
    if len(x) != len(y):
        raise _fail(
            path,
            f"{FEATURES_KEY} and {LABELS_KEY} differ in length: "
            f"{FEATURES_KEY} has {len(x)} rows, {LABELS_KEY} has {len(y)} labels",
        )
    classes = np.unique(y)
    if len(classes) < 2:
        raise _fail(path, f"one class only (label {classes[0]}); OTDD needs at least two")
    return LabelledArrays(x, y, path)


def load_pair(
    source: str | os.PathLike[str], target: str | os.PathLike[str]
) -> tuple[LabelledArrays, LabelledArrays]:
    """Both datasets, checked, with equal feature dimensions."""
    first, second = load_labelled(source), load_labelled(target)
    d_source, d_target = first.features.shape[1], second.features.shape[1]
    if d_source != d_target:
        raise DatasetFileError(
            f"{second.path}: features have dimension {d_target}, "
            f"but {first.path} has dimension {d_source}; both must match"
        )
    return first, second
