"""Standardisation of a task's inputs and real-valued targets, fitted on the training split.

A user's task file may bring inputs in any units (counts, volts, prices) and targets far
from unit scale. The embedder's LayerNorm hides an input's scale, and a predictor that
starts near zero needs many steps to reach a mean field of, say, 0.8. So OrcaModel wraps:

    embed(x)    = embedder((x - input_mean) / input_std)
    predict(h)  = predictor(h) * target_std + target_mean      (regression and dense)

Statistics (buffers, saved with the model), per element: per channel and position of
(C, L) and (C, H, W) inputs, per feature value of tabular (C, F) inputs, per target of
regression outputs, per position of dense outputs. A zero predictor output is then the
training mean field, and the embedder sees where an example departs from the average
example. Per position, not per channel: on GunPoint (aligned series) the default recipe
reached 15-17% test error with per-position statistics and 35% with per-channel ones
(benchmarks/diagnose_quality.py, one seed). An input element's std is floored at
`INPUT_STD_FLOOR` x its channel's std, so near-constant positions (an image's border) are
not blown up; a constant element keeps std = 1: its standardised value is 0 either way.
Classification and multi-label outputs are left alone. Data that is already standardised
passes through nearly unchanged.
"""

from __future__ import annotations

import torch
from torch import nn

# The axes of an input batch over which a channel's std (the floor's reference) is taken
# besides the batch axis, by modality: the positions of (N, C, L) and (N, C, H, W); none
# for tabular (N, C, F), whose features have unrelated units.
INPUT_POOLED_AXES = {"1d": (2,), "2d": (2, 3), "tabular": ()}
INPUT_STD_FLOOR = 0.1
SCALED_OUTPUTS = ("regression", "dense1d", "dense2d")


class Standardizer(nn.Module):
    """(x - mean) / std with per-element buffers broadcast over the batch."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(shape))
        self.register_buffer("std", torch.ones(shape))

    @torch.no_grad()
    def fit(
        self, data: torch.Tensor, floor_axes: tuple[int, ...] | None = None, floor: float = 0.0
    ) -> None:
        """Fit per-element statistics on `data` (N, *shape). With `floor_axes` (axes of
        `data`, e.g. 2 for the positions of (N, C, L)), an element's std is at least
        `floor` x the std pooled over the batch and those axes."""
        data = data.double()
        mean = data.mean(dim=0)
        std = data.std(dim=0, correction=0)
        if floor_axes is not None and floor > 0:
            pooled = data.std(dim=(0, *floor_axes), keepdim=True, correction=0)[0]
            std = torch.maximum(std, floor * pooled)
        std = torch.where(std > 1e-8 * (1 + mean.abs()), std, torch.ones_like(std))
        self.mean.copy_(mean)
        self.std.copy_(std)

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
