"""Stage 1 predictors: map the body's output tokens (B, T, D) to the task's label space.

Pooled heads (classification, multi-label, regression) mean-pool over tokens (not a CLS
token). Dense heads map each token back to the input positions it came from.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from orca.registry import Registry

PREDICTORS: Registry[Callable[..., nn.Module]] = Registry("predictor")


class MeanPoolLinear(nn.Module):
    """Mean over tokens, then Linear(D, n_out): (B, T, D) -> (B, n_out)."""

    def __init__(self, hidden_size: int, num_outputs: int) -> None:
        super().__init__()
        self.head = nn.Linear(hidden_size, num_outputs)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.head(h.mean(dim=1))  # (B, D) -> (B, n_out)


class Dense1dHead(nn.Module):
    """Each token -> n_out * s values, unfolded back to the input length L = T * s."""

    def __init__(self, hidden_size: int, num_outputs: int, stride: int) -> None:
        super().__init__()
        self.num_outputs, self.stride = num_outputs, stride
        self.head = nn.Linear(hidden_size, num_outputs * stride)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        b, t, _ = h.shape
        out = self.head(h).view(b, t, self.num_outputs, self.stride)  # (B, T, n_out, s)
        return out.permute(0, 2, 1, 3).reshape(b, self.num_outputs, t * self.stride)


class Dense2dHead(nn.Module):
    """Each patch token -> n_out * p * p values, tiled back to the (padded) image grid and
    cropped to the input's H x W: a linear pixel-shuffle decoder."""

    def __init__(
        self,
        hidden_size: int,
        num_outputs: int,
        patch: int,
        grid: tuple[int, int],
        output_hw: tuple[int, int],
    ) -> None:
        super().__init__()
        self.num_outputs, self.patch, self.grid, self.output_hw = (
            num_outputs,
            patch,
            grid,
            output_hw,
        )
        self.head = nn.Linear(hidden_size, num_outputs * patch * patch)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        b = h.shape[0]
        (gh, gw), p, n = self.grid, self.patch, self.num_outputs
        out = self.head(h).view(b, gh, gw, n, p, p)  # (B, gh, gw, n_out, p, p)
        out = out.permute(0, 3, 1, 4, 2, 5).reshape(b, n, gh * p, gw * p)
        return out[:, :, : self.output_hw[0], : self.output_hw[1]]  # (B, n_out, H, W)


def _pooled(hidden_size: int, num_outputs: int, **_: object) -> MeanPoolLinear:
    return MeanPoolLinear(hidden_size, num_outputs)


for _kind in ("classification", "multilabel", "regression"):
    PREDICTORS.register(_kind, _pooled)


@PREDICTORS.register("dense1d")
def dense1d_head(
    hidden_size: int, num_outputs: int, *, embedder: nn.Module, **_: object
) -> Dense1dHead:
    return Dense1dHead(hidden_size, num_outputs, embedder.stride)


@PREDICTORS.register("dense2d")
def dense2d_head(
    hidden_size: int, num_outputs: int, *, embedder: nn.Module, **_: object
) -> Dense2dHead:
    return Dense2dHead(hidden_size, num_outputs, embedder.patch, embedder.grid, embedder.input_hw)
