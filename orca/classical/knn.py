"""k-nearest neighbours on the flattened inputs, in Euclidean distance.

Classification votes among the k nearest training rows (KNeighborsClassifier; its class
frequencies are the scores). Regression, dense outputs and multi-label targets average
the neighbours' targets (KNeighborsRegressor), so a multi-label score is the share of the
neighbours carrying the label. The inputs are not rescaled: 1-NN in Euclidean distance on
the raw series is the usual time-series baseline.

Chosen on validation: k from K_GRID (those below the number of training rows) and whether
neighbours count equally or by inverse distance. Neighbour search is deterministic, so the
seed changes nothing.
"""

from __future__ import annotations

from typing import Any

from orca.classical.registry import ClassicalModel, EstimatorKind, register_classical

K_GRID = (1, 3, 5, 7, 9, 15)
WEIGHTS = ("uniform", "distance")


def knn_grid(kind: EstimatorKind, n_train: int, n_features: int) -> list[dict[str, Any]]:
    ks = [k for k in K_GRID if k <= n_train] or [n_train]
    # With one neighbour, distance weighting is the same model as uniform.
    return [
        {"n_neighbors": k, "weights": weights}
        for k in ks
        for weights in WEIGHTS
        if k > 1 or weights == "uniform"
    ]


def _classifier(params: dict[str, Any], seed: int, n_jobs: int):
    from sklearn.neighbors import KNeighborsClassifier

    return KNeighborsClassifier(**params, n_jobs=n_jobs)


def _regressor(params: dict[str, Any], seed: int, n_jobs: int):
    from sklearn.neighbors import KNeighborsRegressor

    return KNeighborsRegressor(**params, n_jobs=n_jobs)


register_classical(
    ClassicalModel(
        "knn",
        "k-nearest neighbours on the flattened inputs (k and weighting chosen on validation)",
        knn_grid,
        {"classifier": _classifier, "multilabel": _regressor, "regressor": _regressor},
    )
)
