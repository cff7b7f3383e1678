"""Model selection for a classical model: fit each candidate on train, keep the best on
validation, then score the test split once.

Every candidate of the model's hyperparameter grid (orca.classical.registry) is fitted on
the training rows and scored with the task's own metric on the validation rows; the best
one (ties: the earlier in the grid; a NaN score never wins) is kept as fitted. It is *not*
refitted on train + validation, so that it has seen exactly the rows a neural method
trains on, which also select its epoch on validation. `score_test` is then the one
prediction on the test split. A metric that needs per-example context (orca.metrics_context:
PSICOV's proteins, Cosmic's ignore mask, FSD50K's clips) is given the validation and the
test split's context.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from orca.classical.outputs import OUTPUT_ADAPTERS, features
from orca.classical.registry import create_classical, hyperparameter_grid
from orca.metrics import METRICS
from orca.metrics_context import select_context

Split = tuple[np.ndarray, np.ndarray]  # (x (N, *input_shape), y (N, *target_shape))
Context = Mapping[str, np.ndarray]  # a split's per-example context: field -> one row each
# (candidates done, candidates in all, the candidate's hyperparameters, its validation score)
CandidateCallback = Callable[[int, int, dict[str, Any], float], None]


@dataclass(frozen=True)
class Candidate:
    params: dict[str, Any]
    validation_value: float


@dataclass(frozen=True)
class Selection:
    """The chosen candidate of `model`, fitted on train, and how every candidate scored."""

    model: str
    output: str
    metric: str
    num_outputs: int
    target_shape: tuple[int, ...]  # one example's target shape: () for class labels
    params: dict[str, Any]
    validation_value: float
    candidates: tuple[Candidate, ...]
    estimator: Any = field(repr=False, compare=False)


def _badness(value: float, lower_is_better: bool) -> float:
    """Smaller is better whatever the metric's direction; NaN is worst."""
    if math.isnan(value):
        return math.inf
    return value if lower_is_better else -value


def select(
    model: str,
    output: str,
    metric: str,
    num_outputs: int,
    train: Split,
    validation: Split,
    seed: int,
    n_jobs: int = 1,
    on_candidate: CandidateCallback | None = None,
    validation_context: Context | None = None,
) -> Selection:
    """Try every candidate of `model` for a task of `output` kind, scored by `metric` on
    `validation` (with `validation_context`, when the metric needs context); return the
    best, fitted on `train` only. Raises UnknownNameError for an unknown model, output kind
    or metric, ValueError for a metric whose context is missing."""
    adapter = OUTPUT_ADAPTERS.get(output)
    scorer = METRICS.get(metric)
    if scorer.context:  # before any candidate is fitted
        select_context(metric, scorer.context, validation_context or {}, len(validation[1]))
    train_x, val_x = features(train[0]), features(validation[0])  # (N, F)
    targets = adapter.targets(train[1])
    target_shape = tuple(np.asarray(train[1]).shape[1:])
    grid = hyperparameter_grid(model, adapter.kind, len(train_x), train_x.shape[1])
    candidates: list[Candidate] = []
    best: tuple[float, Candidate, Any] | None = None  # (badness, candidate, its estimator)
    for done, params in enumerate(grid, start=1):
        estimator = create_classical(model, adapter.kind, params, seed, n_jobs)
        estimator.fit(train_x, targets)
        outputs = adapter.outputs(estimator, val_x, num_outputs, target_shape)
        value = float(scorer.score(outputs, validation[1], validation_context))
        candidates.append(Candidate(dict(params), value))
        badness = _badness(value, scorer.lower_is_better)
        if best is None or badness < best[0]:
            best = (badness, candidates[-1], estimator)
        if on_candidate is not None:
            on_candidate(done, len(grid), dict(params), value)
    if best is None:
        raise ValueError(f"classical model {model!r} has no hyperparameter candidates")
    _, chosen, estimator = best
    return Selection(
        model=model,
        output=output,
        metric=metric,
        num_outputs=num_outputs,
        target_shape=target_shape,
        params=chosen.params,
        validation_value=chosen.validation_value,
        candidates=tuple(candidates),
        estimator=estimator,
    )


def predict(selection: Selection, x: np.ndarray) -> np.ndarray:
    """The chosen model's outputs for inputs `x`, in the shape the task's metric takes."""
    adapter = OUTPUT_ADAPTERS.get(selection.output)
    return adapter.outputs(
        selection.estimator, features(x), selection.num_outputs, selection.target_shape
    )


def score_test(selection: Selection, test: Split, context: Context | None = None) -> float:
    """The chosen model's test metric: call this once, after selection, on the test split
    (with its `context`, when the metric needs context)."""
    scorer = METRICS.get(selection.metric)
    return float(scorer.score(predict(selection, test[0]), test[1], context))
