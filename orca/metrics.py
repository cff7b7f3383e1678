"""Task losses and evaluation metrics, by name.

Losses are torch callables `(prediction, target) -> scalar tensor`. Metrics take numpy
arrays of predictions (logits or values) and targets and return a float; each says
whether lower is better.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from orca.registry import Registry

LOSSES: Registry[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = Registry("loss")
METRICS: Registry[Metric] = Registry("metric")


@dataclass(frozen=True)
class Metric:
    name: str
    compute: Callable[[np.ndarray, np.ndarray], float]
    lower_is_better: bool
    description: str


LOSSES.register("cross_entropy", lambda logits, y: F.cross_entropy(logits, y.long()))
LOSSES.register("bce", lambda logits, y: F.binary_cross_entropy_with_logits(logits, y.float()))
LOSSES.register("mse", lambda pred, y: F.mse_loss(pred, y.float()))


@LOSSES.register("relative_l2")
def relative_l2_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over examples of ||pred - target||_2 / ||target||_2."""
    diff = (pred - target).flatten(1).norm(dim=1)  # (B,)
    return (diff / target.flatten(1).norm(dim=1).clamp_min(1e-12)).mean()


def _error_rate(logits: np.ndarray, y: np.ndarray) -> float:
    return float(100.0 * np.mean(logits.argmax(axis=1) != y))


def _one_minus_auroc(logits: np.ndarray, y: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score  # imported on use: it costs seconds at startup

    if logits.shape[1] == 2:
        return float(1.0 - roc_auc_score(y, logits[:, 1] - logits[:, 0]))
    probs = torch.softmax(torch.from_numpy(logits).double(), dim=1).numpy()
    return float(1.0 - roc_auc_score(y, probs, multi_class="ovo", labels=range(logits.shape[1])))


def _one_minus_macro_f1(logits: np.ndarray, y: np.ndarray) -> float:
    from sklearn.metrics import f1_score

    return float(1.0 - f1_score(y, logits.argmax(axis=1), average="macro"))


def _relative_l2(pred: np.ndarray, y: np.ndarray) -> float:
    return float(relative_l2_loss(torch.from_numpy(pred), torch.from_numpy(y)))


def _nrmse(pred: np.ndarray, y: np.ndarray) -> float:
    """Per-example RMSE normalised by the target's RMS norm, averaged (PDEBench's nRMSE)."""
    diff = np.sqrt(((pred - y) ** 2).reshape(len(y), -1).mean(axis=1))
    scale = np.sqrt((y**2).reshape(len(y), -1).mean(axis=1))
    return float(np.mean(diff / np.maximum(scale, 1e-12)))


for _metric in (
    Metric("error_rate", _error_rate, True, "0-1 classification error, percent"),
    Metric("one_minus_auroc", _one_minus_auroc, True, "1 - AUROC (one-vs-one if multiclass)"),
    Metric("one_minus_macro_f1", _one_minus_macro_f1, True, "1 - macro-averaged F1"),
    Metric("relative_l2", _relative_l2, True, "mean relative L2 error"),
    Metric("nrmse", _nrmse, True, "normalised RMSE (PDEBench)"),
):
    METRICS.register(_metric.name, _metric)
