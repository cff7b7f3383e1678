"""Between a task's arrays and a scikit-learn estimator's, for each task output kind.

Inputs of any shape (N, *input_shape) are flattened to features (N, F). Targets are fitted
and predictions returned in the shapes orca.metrics expects for the output kind:

  output kind      fitted targets          outputs (what the metric scores)
  classification   (N,) int labels         (N, C) log class probabilities (C = num_outputs)
  multilabel       (N, K) 0/1              (N, K) scores: log-odds or label frequencies
  regression       (N, T) or (N,) if T=1   (N, *target_shape) values
  dense1d/dense2d  (N, T) flattened        (N, *target_shape), e.g. (N, n_out, L)

Log class probabilities are logits of a kind: argmax, the two-logit difference and the
softmax that the classification metrics take give back the probabilities' ranking (a
probability of 0 becomes log(PROBABILITY_FLOOR), not -inf). A class absent from the
training rows gets probability 0.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from orca.classical.registry import EstimatorKind
from orca.registry import Registry

PROBABILITY_FLOOR = 1e-12


def features(x: np.ndarray) -> np.ndarray:
    """(N, *input_shape) -> (N, F)."""
    x = np.asarray(x)
    return x.reshape(len(x), -1)


@dataclass(frozen=True)
class OutputAdapter:
    kind: EstimatorKind
    targets: Callable[[np.ndarray], np.ndarray]  # task targets -> fitted targets
    # (fitted estimator, features (N, F), num_outputs, target_shape) -> metric outputs
    outputs: Callable[[Any, np.ndarray, int, tuple[int, ...]], np.ndarray]


def _labels(y: np.ndarray) -> np.ndarray:
    return np.asarray(y).astype(np.int64)


def _class_log_probabilities(
    estimator: Any, x: np.ndarray, num_classes: int, target_shape: tuple[int, ...]
) -> np.ndarray:
    seen = np.asarray(estimator.classes_, dtype=np.int64)  # the classes train held
    probabilities = np.zeros((len(x), num_classes))  # (N, C)
    probabilities[:, seen] = estimator.predict_proba(x)  # (N, len(seen))
    return np.log(np.maximum(probabilities, PROBABILITY_FLOOR))


def _label_matrix(y: np.ndarray) -> np.ndarray:
    return np.asarray(y, dtype=np.float64)


def _label_scores(
    estimator: Any, x: np.ndarray, num_labels: int, target_shape: tuple[int, ...]
) -> np.ndarray:
    scores = (
        estimator.decision_function(x)
        if hasattr(estimator, "decision_function")
        else estimator.predict(x)
    )
    return np.asarray(scores, dtype=np.float64).reshape(len(x), -1)  # (N, K)


def _values(y: np.ndarray) -> np.ndarray:
    flat = np.asarray(y, dtype=np.float64).reshape(len(y), -1)  # (N, T)
    return flat[:, 0] if flat.shape[1] == 1 else flat


def _predicted_values(
    estimator: Any, x: np.ndarray, num_outputs: int, target_shape: tuple[int, ...]
) -> np.ndarray:
    predicted = np.asarray(estimator.predict(x), dtype=np.float64)  # (N,) or (N, T)
    return predicted.reshape(len(x), *target_shape)


_REGRESSION = OutputAdapter("regressor", _values, _predicted_values)
OUTPUT_ADAPTERS: Registry[OutputAdapter] = Registry("output kind")
OUTPUT_ADAPTERS.register(
    "classification", OutputAdapter("classifier", _labels, _class_log_probabilities)
)
OUTPUT_ADAPTERS.register("multilabel", OutputAdapter("multilabel", _label_matrix, _label_scores))
for _output in ("regression", "dense1d", "dense2d"):
    OUTPUT_ADAPTERS.register(_output, _REGRESSION)
