"""Classical models by name: each one's hyperparameter grid and how to build its estimator.

A classical model is a family of scikit-learn estimators indexed by hyperparameters. Which
estimator it builds depends on the *estimator kind* a task's output needs
(orca.classical.outputs):

  classifier   integer labels (N,)           -> class probabilities
  multilabel   0/1 targets (N, K)             -> a score per label
  regressor    real targets, flattened (N, T) -> values (N, T)

`hyperparameter_grid(name, kind, n_train, n_features)` lists the candidates that
selection (orca.classical.selection) tries on the validation split, in a fixed order;
`create_classical(name, kind, params, seed)` builds one unfitted estimator.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from orca.registry import Registry

ESTIMATOR_KINDS = ("classifier", "multilabel", "regressor")
EstimatorKind = str  # one of ESTIMATOR_KINDS

# (kind, n_train, n_features) -> the candidate hyperparameter dicts, in the order tried
GridFn = Callable[[EstimatorKind, int, int], list[dict[str, Any]]]
# (params, seed, n_jobs) -> an unfitted estimator
BuildFn = Callable[[dict[str, Any], int, int], Any]


@dataclass(frozen=True)
class ClassicalModel:
    name: str
    description: str
    grid: GridFn
    builders: dict[str, BuildFn] = field(repr=False)  # estimator kind -> builder

    def __post_init__(self) -> None:
        missing = sorted(set(ESTIMATOR_KINDS) - set(self.builders))
        if missing:
            raise ValueError(
                f"classical model {self.name!r}: no builder for estimator kind(s) {missing}; "
                f"every model needs one for each of {', '.join(ESTIMATOR_KINDS)}"
            )


CLASSICAL_MODELS: Registry[ClassicalModel] = Registry("classical model")


def register_classical(model: ClassicalModel) -> ClassicalModel:
    return CLASSICAL_MODELS.register(model.name, model)


def _check_kind(kind: str) -> None:
    if kind not in ESTIMATOR_KINDS:
        raise ValueError(
            f"estimator kind {kind!r} is not valid; expected one of: {', '.join(ESTIMATOR_KINDS)}"
        )


def hyperparameter_grid(
    name: str, kind: EstimatorKind, n_train: int, n_features: int
) -> list[dict[str, Any]]:
    """The candidates model `name` tries for `n_train` training rows of `n_features`."""
    _check_kind(kind)
    return CLASSICAL_MODELS.get(name).grid(kind, n_train, n_features)


def create_classical(
    name: str, kind: EstimatorKind, params: dict[str, Any], seed: int, n_jobs: int = 1
) -> Any:
    """An unfitted estimator of model `name` for `kind`, seeded with `seed`; `n_jobs`
    parallelises fitting where the estimator can (it never changes the result)."""
    _check_kind(kind)
    return CLASSICAL_MODELS.get(name).builders[kind](params, seed, n_jobs)
