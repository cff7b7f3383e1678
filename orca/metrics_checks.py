"""Input checks shared by the metrics (orca.metrics, orca.metrics_context): each validates a
metric's predictions and targets against one shape convention (orca.metrics' docstring) and
raises ValueError naming the metric, the shapes found and the shapes expected."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def shape_error(name: str, pred: np.ndarray, y: np.ndarray, expected: str) -> ValueError:
    return ValueError(
        f"metric {name!r}: got predictions of shape {tuple(pred.shape)} and targets of shape "
        f"{tuple(y.shape)}; expected {expected}"
    )


def class_labels(name: str, logits: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Check (N, C) logits against (N,) integer labels in [0, C); return the labels as int."""
    logits, y = np.asarray(logits), np.asarray(y)
    if logits.ndim != 2 or y.ndim != 1 or len(y) != len(logits) or len(y) == 0:
        raise shape_error(name, logits, y, "2-D logits (N, C) and 1-D integer labels (N,), N > 0")
    if y.dtype.kind not in "biu" and not np.array_equal(y, np.round(y)):
        raise ValueError(f"metric {name!r}: targets must be integer class labels, got {y.dtype}")
    if y.min() < 0 or y.max() >= logits.shape[1]:
        raise ValueError(
            f"metric {name!r}: labels must lie in [0, {logits.shape[1]}) for "
            f"{logits.shape[1]} logits, found range [{y.min()}, {y.max()}]"
        )
    return y.astype(np.int64)


def multilabel_targets(name: str, logits: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Check (N, K) logits against (N, K) 0/1 targets; return the targets as int."""
    logits, y = np.asarray(logits), np.asarray(y)
    if logits.ndim != 2 or y.shape != logits.shape or len(y) == 0:
        raise shape_error(name, logits, y, "2-D logits (N, K) and 0/1 targets of the same shape")
    if not np.isin(y, (0, 1)).all():
        raise ValueError(f"metric {name!r}: multi-label targets must be 0 or 1")
    return y.astype(np.int64)


def same_shape(name: str, pred: np.ndarray, y: np.ndarray, min_examples: int = 1):
    """Check regression predictions against targets of the same shape (N, ...)."""
    pred, y = np.asarray(pred, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if pred.shape != y.shape or pred.ndim == 0 or len(y) < min_examples:
        raise shape_error(
            name, pred, y, f"predictions and targets of one shape (N, ...), N >= {min_examples}"
        )
    return pred, y


def per_label_mean(name: str, score: Callable, logits: np.ndarray, y: np.ndarray) -> float:
    """Mean of `score(targets_k, logits_k)` over label columns holding both classes."""
    y = multilabel_targets(name, logits, y)
    usable = [k for k in range(y.shape[1]) if 0 < y[:, k].sum() < len(y)]
    if not usable:
        raise ValueError(
            f"metric {name!r}: no label column holds both classes among {len(y)} examples, "
            "so the score is undefined"
        )
    return float(np.mean([score(y[:, k], np.asarray(logits)[:, k]) for k in usable]))
