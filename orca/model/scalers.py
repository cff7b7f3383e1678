"""Standardisation of a task's inputs and real-valued targets, fitted on the training split.

A user's task file may bring inputs in any units (counts, volts, prices) and targets far
from unit scale. The embedder's LayerNorm hides an input's scale, and a predictor that
starts near zero needs many steps to reach a mean field of, say, 0.8. So OrcaModel wraps:

    embed(x)    = embedder((x - input_mean) / input_std)
    predict(h)  = predictor(h) * target_std + target_mean      (regression and dense)

Statistics (buffers, saved with the model):
    inputs   one mean and std per channel for 1d (C, L) and 2d (C, H, W); per feature
             value for tabular (C, F), whose columns have unrelated units
    targets  per output element: per target for regression, per position for dense
             outputs, so that a zero predictor output is the training mean field
A constant (zero-std) element keeps std = 1: its standardised value is 0 either way.
Classification and multi-label outputs are left alone. Data that is already standardised
passes through nearly unchanged.
"""

from __future__ import annotations

import torch
from torch import nn

# Which axes of an input batch share one statistic besides the batch axis, by modality:
# the positions of (N, C, L) and (N, C, H, W); none for tabular (N, C, F).
INPUT_POOLED_AXES = {"1d": (2,), "2d": (2, 3), "tabular": ()}
SCALED_OUTPUTS = ("regression", "dense1d", "dense2d")


class Standardizer(nn.Module):
    """(x - mean) / std with per-element buffers broadcast over the batch."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(shape))
        self.register_buffer("std", torch.ones(shape))

    @torch.no_grad()
    def fit(self, data: torch.Tensor, pooled_axes: tuple[int, ...] = ()) -> None:
        """Fit on `data` (N, *shape): statistics over the batch axis and `pooled_axes`
        (axes of `data`, e.g. 2 for the positions of (N, C, L))."""
        dims = (0, *pooled_axes)
        data = data.double()
        mean = data.mean(dim=dims, keepdim=True)[0]
        std = data.std(dim=dims, keepdim=True, correction=0)[0]
        std = torch.where(std > 1e-8 * (1 + mean.abs()), std, torch.ones_like(std))
        self.mean.copy_(mean.expand_as(self.mean))
        self.std.copy_(std.expand_as(self.std))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return y * self.std + self.mean


def target_shape(task) -> tuple[int, ...] | None:
    """The shape of one target for outputs that are standardised, else None."""
    if task.output not in SCALED_OUTPUTS:
        return None
    if task.output == "regression":
        return (task.num_outputs,)
    return (task.num_outputs, *task.input_shape[1:])  # (n_out, L) or (n_out, H, W)
