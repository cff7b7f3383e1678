"""Stage 1 predictors: map the body's output tokens (B, T, D) to the task's label space."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from orca.registry import Registry

PREDICTORS: Registry[Callable[..., nn.Module]] = Registry("predictor")


class MeanPoolLinear(nn.Module):
    """Mean over tokens (not a CLS token), then Linear(D, n_out): (B, T, D) -> (B, n_out)."""

    def __init__(self, hidden_size: int, num_outputs: int) -> None:
        super().__init__()
        self.head = nn.Linear(hidden_size, num_outputs)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.head(h.mean(dim=1))  # (B, D) -> (B, n_out)


@PREDICTORS.register("classification")
def classification_head(hidden_size: int, num_outputs: int, **_: object) -> MeanPoolLinear:
    return MeanPoolLinear(hidden_size, num_outputs)
