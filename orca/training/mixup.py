"""Mixup for fine-tuning on class labels (Zhang et al., ICLR 2018).

Each training batch is replaced by convex combinations of its examples with a shuffled copy
of itself, x' = w x + (1 - w) x[perm], and the loss becomes w L(out, y) + (1 - w) L(out,
y[perm]), with w drawn per batch from Beta(alpha, alpha) (folded to w >= 1/2). With tens
of training examples, the 22M-parameter model otherwise memorises the training set within
a few epochs (gunpoint: training loss 0.000 from epoch 13 of 26, validation flat after).

`refine.mixup` is 0 (off, the default), alpha, or "auto": mix when the targets are integer
class labels (classification) with alpha = AUTO_ALPHA, and not for real-valued targets
(regression, dense fields, multilabel), where a mixed input's target is not the mixed
target in general. It is off by default because its effect was mixed (test error, mean of
2 seeds, benchmarks/diagnose_quality.py, variants mixup=0 and mixup=auto): better on
digits (16.5 -> 11.6%), acsf1 (40.5 -> 32.0%), breast-cancer (1 - AUROC 0.042 -> 0.032) and
a synthetic 2-D bar-orientation task (38.7 -> 26.8%); worse on gunpoint (18.3 -> 25.7%) and
on three noisy sine classes (54.3 -> 68.7%, 48 training series); equal on basicmotions
and a synthetic tabular task. The smallest training sets lost.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

AUTO_ALPHA = 0.4


def mixup_alpha(setting: float | str, targets: Tensor) -> float:
    """The Beta parameter to train with: `setting` itself, or for "auto" AUTO_ALPHA when
    `targets` are integer class labels and 0 (no mixup) otherwise."""
    if setting != "auto":
        return float(setting)
    integer = not (targets.is_floating_point() or targets.is_complex())
    return AUTO_ALPHA if integer and targets.dtype != torch.bool else 0.0


def mixed_loss(
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    forward: Callable[[Tensor], Tensor],
    x: Tensor,
    y: Tensor,
    alpha: float,
    generator: torch.Generator,
) -> Tensor:
    """The mixup loss of one batch (the plain loss for alpha 0 or a single example).

    The mixing weight and the pairing come from `generator` (torch's Beta sampler takes no
    generator, so the weight is drawn by numpy from a seed that `generator` gives), so a
    resumed run draws the same batches as an uninterrupted one."""
    if alpha <= 0 or len(x) < 2:
        return loss_fn(forward(x).float(), y)
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
    weight = float(np.random.default_rng(seed).beta(alpha, alpha))
    weight = max(weight, 1.0 - weight)
    partner = torch.randperm(len(x), generator=generator).to(x.device)
    out = forward(weight * x + (1.0 - weight) * x[partner]).float()
    return weight * loss_fn(out, y) + (1.0 - weight) * loss_fn(out, y[partner])
