"""Task losses and evaluation metrics, by name.

Losses are torch callables `(prediction, target) -> scalar tensor`. Metrics take numpy
arrays of predictions (logits or values) for a whole split and its targets and return a
float; each says whether lower is better. A metric is computed once over the whole split,
never averaged over batches. Shapes are checked on entry: incompatible predictions and
targets raise ValueError naming the metric, the shapes found and the shapes expected.

Shape conventions (N examples):
  classification      predictions (N, C) logits, targets (N,) integer labels in [0, C)
  binary AUROC        also predictions (N,) or (N, 1): one logit, targets (N,) or (N, 1) 0/1
  multi-label         predictions (N, K) logits, targets (N, K) 0/1 (e.g. DeepSEA, FSD50K)
  regression / dense  predictions and targets of one shape (N, ...)

Multi-label AUROC and mAP average over label columns; a column whose targets hold a single
class (no positives, or no negatives) has no defined score and is skipped, as the DeepSEA
evaluation does. If no column is usable the metric raises ValueError.

Some metrics need more than (predictions, targets): which protein a PSICOV tile comes from
and where, Cosmic's ignore mask, the FSD50K clip a chunk was cut from. Such a metric names
the per-example arrays it needs in `Metric.context`; `Metric.score(predictions, targets,
context)` checks and passes them. The arrays, their names and the paper's metrics that use
them are in orca.metrics_context.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from orca.metrics_checks import (
    class_labels,
    multilabel_targets,
    per_label_mean,
    same_shape,
)
from orca.metrics_context import (
    cosmic_one_minus_auroc,
    one_minus_map_per_clip,
    psicov_mae8,
    select_context,
)
from orca.registry import Registry

LOSSES: Registry[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = Registry("loss")
METRICS: Registry[Metric] = Registry("metric")


@dataclass(frozen=True)
class Metric:
    """`compute(predictions, targets, **context)` -> float over a whole split. `context`
    names the per-example arrays (orca.metrics_context.CONTEXT_FIELDS) that `compute` takes
    as keyword arguments; most metrics need none."""

    name: str
    compute: Callable[..., float]
    lower_is_better: bool
    description: str
    context: tuple[str, ...] = ()

    def score(
        self,
        predictions: np.ndarray,
        targets: np.ndarray,
        context: Mapping[str, np.ndarray] | None = None,
    ) -> float:
        """The metric over a split, given the split's per-example context arrays (a metric
        takes only those it names; a missing one raises ValueError naming it)."""
        if not self.context:
            return float(self.compute(predictions, targets))
        chosen = select_context(self.name, self.context, context or {}, len(np.asarray(targets)))
        return float(self.compute(predictions, targets, **chosen))


LOSSES.register("cross_entropy", lambda logits, y: F.cross_entropy(logits, y.long()))
LOSSES.register("bce", lambda logits, y: F.binary_cross_entropy_with_logits(logits, y.float()))
LOSSES.register("mse", lambda pred, y: F.mse_loss(pred, y.float()))
LOSSES.register("l1", lambda pred, y: F.l1_loss(pred, y.float()))


@LOSSES.register("relative_l2")
def relative_l2_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over examples of ||pred - target||_2 / ||target||_2."""
    diff = (pred - target).flatten(1).norm(dim=1)  # (B,)
    return (diff / target.flatten(1).norm(dim=1).clamp_min(1e-12)).mean()


def _error_rate(logits: np.ndarray, y: np.ndarray) -> float:
    y = class_labels("error_rate", logits, y)
    return float(100.0 * np.mean(np.asarray(logits).argmax(axis=1) != y))


def _one_minus_auroc(logits: np.ndarray, y: np.ndarray) -> float:
    """Binary AUROC from 2 logits (their difference) or 1 logit; one-vs-one if multiclass."""
    from sklearn.metrics import roc_auc_score  # imported on use: it costs seconds at startup

    logits, y = np.asarray(logits), np.asarray(y)
    single = logits.ndim == 1 or (logits.ndim == 2 and logits.shape[1] == 1)
    if single and y.shape in {(len(logits),), (len(logits), 1)} and len(y) > 0:
        labels = multilabel_targets("one_minus_auroc", logits.reshape(-1, 1), y.reshape(-1, 1))
        return float(1.0 - roc_auc_score(labels[:, 0], logits.reshape(-1)))
    y = class_labels("one_minus_auroc", logits, y)
    if logits.shape[1] == 2:
        return float(1.0 - roc_auc_score(y, logits[:, 1] - logits[:, 0]))
    probs = torch.softmax(torch.from_numpy(logits).double(), dim=1).numpy()
    return float(1.0 - roc_auc_score(y, probs, multi_class="ovo", labels=range(logits.shape[1])))


def _one_minus_macro_f1(logits: np.ndarray, y: np.ndarray) -> float:
    from sklearn.metrics import f1_score

    y = class_labels("one_minus_macro_f1", logits, y)
    return float(1.0 - f1_score(y, np.asarray(logits).argmax(axis=1), average="macro"))


def _one_minus_auroc_multilabel(logits: np.ndarray, y: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return 1.0 - per_label_mean("one_minus_auroc_multilabel", roc_auc_score, logits, y)


def _one_minus_map(logits: np.ndarray, y: np.ndarray) -> float:
    from sklearn.metrics import average_precision_score

    return 1.0 - per_label_mean("one_minus_map", average_precision_score, logits, y)


def _relative_l2(pred: np.ndarray, y: np.ndarray) -> float:
    """Mean over examples of ||pred - y||_2 / ||y||_2 (the relative_l2 loss, in numpy)."""
    pred, y = same_shape("relative_l2", pred, y)
    diff = np.linalg.norm((pred - y).reshape(len(y), -1), axis=1)
    return float(np.mean(diff / np.maximum(np.linalg.norm(y.reshape(len(y), -1), axis=1), 1e-12)))


def _nrmse(pred: np.ndarray, y: np.ndarray) -> float:
    """Per-example RMSE normalised by the target's RMS norm, averaged (PDEBench's nRMSE)."""
    pred, y = same_shape("nrmse", pred, y)
    diff = np.sqrt(((pred - y) ** 2).reshape(len(y), -1).mean(axis=1))
    scale = np.sqrt((y**2).reshape(len(y), -1).mean(axis=1))
    return float(np.mean(diff / np.maximum(scale, 1e-12)))


def _mae(pred: np.ndarray, y: np.ndarray) -> float:
    pred, y = same_shape("mae", pred, y)
    return float(np.mean(np.abs(pred - y)))


def _mae8(pred: np.ndarray, y: np.ndarray) -> float:
    """MAE over the elements whose true value is below 8, wherever they are: on PSICOV tiles
    this counts short-range pairs and pairs in overlapping tiles twice, so it is orca's
    earlier per-tile number, not the paper's MAE8 (that is "psicov_mae8")."""
    pred, y = same_shape("mae8", pred, y)
    close = y < 8.0
    if not close.any():
        raise ValueError("metric 'mae8': no target value is below 8; nothing to score")
    return float(np.mean(np.abs(pred[close] - y[close])))


def _one_minus_auroc_pixelwise(logits: np.ndarray, y: np.ndarray) -> float:
    """1 - AUROC over every element of dense 0/1 targets pooled together (Cosmic's
    per-pixel cosmic-ray masks), ranking by the logits; no pixel is ignored. The paper's
    Cosmic metric thresholds and masks instead ("cosmic_one_minus_auroc")."""
    from sklearn.metrics import roc_auc_score

    logits, y = same_shape("one_minus_auroc_pixelwise", logits, y)
    labels = y.reshape(-1)
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("metric 'one_minus_auroc_pixelwise': targets must be 0 or 1")
    if labels.min() == labels.max():
        raise ValueError("metric 'one_minus_auroc_pixelwise': targets hold a single class")
    return float(1.0 - roc_auc_score(labels, logits.reshape(-1)))


def _one_minus_r2(pred: np.ndarray, y: np.ndarray) -> float:
    """1 - R^2 with each flattened output column scored separately, then averaged uniformly."""
    from sklearn.metrics import r2_score

    pred, y = same_shape("one_minus_r2", pred, y, min_examples=2)
    flat = (y.reshape(len(y), -1), pred.reshape(len(y), -1))
    return float(1.0 - r2_score(*flat, multioutput="uniform_average"))


for _metric in (
    Metric("error_rate", _error_rate, True, "0-1 classification error, percent"),
    Metric("one_minus_auroc", _one_minus_auroc, True, "1 - AUROC (one-vs-one if multiclass)"),
    Metric(
        "one_minus_auroc_multilabel",
        _one_minus_auroc_multilabel,
        True,
        "1 - macro AUROC over label columns (multi-label)",
    ),
    Metric(
        "one_minus_map",
        _one_minus_map,
        True,
        "1 - macro average precision (multi-label), one row = one example (an FSD50K chunk)",
    ),
    Metric("one_minus_macro_f1", _one_minus_macro_f1, True, "1 - macro-averaged F1"),
    Metric("relative_l2", _relative_l2, True, "mean relative L2 error"),
    Metric("nrmse", _nrmse, True, "normalised RMSE (PDEBench)"),
    Metric("mae", _mae, True, "mean absolute error over all elements"),
    Metric("one_minus_r2", _one_minus_r2, True, "1 - R^2, uniform average over outputs"),
    Metric(
        "mae8",
        _mae8,
        True,
        "MAE over elements whose target is below 8 (PSICOV per tile; not the paper's MAE8)",
    ),
    Metric(
        "one_minus_auroc_pixelwise",
        _one_minus_auroc_pixelwise,
        True,
        "1 - AUROC of the logits over all elements of dense 0/1 targets (Cosmic, no mask)",
    ),
    # The paper's metrics that need per-example context (orca.metrics_context).
    Metric(
        "psicov_mae8",
        psicov_mae8,
        True,
        "PSICOV's MAE8 as the paper: pairs >= 24 apart within 8 A, symmetrised, per protein",
        context=("protein", "row_start", "col_start", "length"),
    ),
    Metric(
        "cosmic_one_minus_auroc",
        cosmic_one_minus_auroc,
        True,
        "Cosmic as the paper: 1 - AUROC of (logit > 0) with the ignore mask applied",
        context=("ignore",),
    ),
    Metric(
        "one_minus_map_per_clip",
        one_minus_map_per_clip,
        True,
        "FSD50K as the paper: 1 - mAP over clips, each clip's chunk logits averaged",
        context=("clip",),
    ),
):
    METRICS.register(_metric.name, _metric)
