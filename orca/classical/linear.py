"""Linear models on the standardised, flattened inputs.

Classification: multinomial logistic regression, its inverse regularisation C chosen on
validation from C_GRID. Multi-label: one logistic regression per label (one-vs-rest) with
a shared C, scored by each label's log-odds. Regression and dense outputs: ridge
regression, one linear map to every output value at once, its penalty alpha chosen on
validation from ALPHA_GRID. Every model standardises its inputs with the training rows'
mean and standard deviation first (fitted on train only, as part of the estimator).

The solvers (lbfgs, Cholesky) are deterministic; the seed is passed on all the same.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from orca.classical.registry import ClassicalModel, EstimatorKind, register_classical

if TYPE_CHECKING:
    import numpy as np

C_GRID = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0)
ALPHA_GRID = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0)
MAX_ITER = 1000


def linear_grid(kind: EstimatorKind, n_train: int, n_features: int) -> list[dict[str, Any]]:
    if kind == "regressor":
        return [{"alpha": alpha} for alpha in ALPHA_GRID]
    return [{"C": c} for c in C_GRID]


class PerLabelLogistic:
    """One standardised logistic regression per label column of 0/1 targets (N, K).

    `decision_function` gives the (N, K) log-odds. A label that takes one value throughout
    the training rows has nothing to learn from; its score is that value, for every row.
    """

    def __init__(self, C: float, seed: int, max_iter: int = MAX_ITER) -> None:
        self.C, self.seed, self.max_iter = C, seed, max_iter

    def fit(self, x: np.ndarray, y: np.ndarray) -> PerLabelLogistic:
        import numpy as np
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import StandardScaler

        self.scaler_ = StandardScaler().fit(x)
        scaled = self.scaler_.transform(x)  # (N, F)
        self.labels_: list[Any] = []
        for column in np.asarray(y).T:  # (N,) per label
            if column.min() == column.max():
                self.labels_.append(float(column[0]))
                continue
            model = LogisticRegression(C=self.C, max_iter=self.max_iter, random_state=self.seed)
            self.labels_.append(model.fit(scaled, column.astype(np.int64)))
        return self

    def decision_function(self, x: np.ndarray) -> np.ndarray:
        import numpy as np

        scaled = self.scaler_.transform(x)
        scores = [
            np.full(len(x), label) if isinstance(label, float) else label.decision_function(scaled)
            for label in self.labels_
        ]
        return np.stack(scores, axis=1)  # (N, K)


def _classifier(params: dict[str, Any], seed: int, n_jobs: int):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(
        StandardScaler(), LogisticRegression(C=params["C"], max_iter=MAX_ITER, random_state=seed)
    )


def _multilabel(params: dict[str, Any], seed: int, n_jobs: int):
    return PerLabelLogistic(params["C"], seed)


def _regressor(params: dict[str, Any], seed: int, n_jobs: int):
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), Ridge(alpha=params["alpha"], random_state=seed))


register_classical(
    ClassicalModel(
        "linear",
        "logistic regression (classes, labels) or ridge regression (values), regularisation "
        "chosen on validation",
        linear_grid,
        {"classifier": _classifier, "multilabel": _multilabel, "regressor": _regressor},
    )
)
