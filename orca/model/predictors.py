"""Stage 1 predictors: map the body's output tokens (B, T, D) to the task's label space.

Heads for one output per example (classification, multi-label, regression) read every
output token through one Linear(T * D, n_out) (`FlattenLinear`) when that layer has at most
FLATTEN_MAX_WEIGHTS weights, and mean-pool over tokens (`MeanPoolLinear`, the authors'
head; no CLS token) above that. Why: a mean over tokens forgets which token said what,
and on small tasks fine-tuning does not teach the body to route it into the mean. Linear
probes of the frozen body's outputs, selected on validation (2 seeds), gave test errors
with the mean against the concatenation of: GunPoint 21.3 against 11.3-13.3%, digits
21.3-25.2 against 14.1-16.7%. Fine-tuned with the demo's recipe (30 s, 2 seeds, align then
refine), the concatenating head lowered the mean test error on GunPoint 24.0 -> 16.3%,
digits 17.1 -> 11.1%, breast cancer 0.032 -> 0.022 (1 - AUROC), Covid3Month 1.07 -> 0.995
(1 - R^2), and raised it on BasicMotions 1.25 -> 2.5% and ACSF1 25 -> 33% (one seed at
42%); these runs were without the 1/T of `FlattenLinear`, and with it seed 0 gave GunPoint
10.7% and digits 9.4%. A head over every token is the one PatchTST (Nie et al., ICLR 2023)
uses for series.
Dense heads map each token back to the input positions it came from.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from orca.registry import Registry

PREDICTORS: Registry[Callable[..., nn.Module]] = Registry("predictor")


HEAD_INIT_STD = 1e-3
# Largest T * D * n_out of a FlattenLinear; above it the head mean-pools (e.g. Swin-base's
# 49 x 1024 outputs: flattened for 2-5 classes, mean-pooled for CIFAR-100's 100).
FLATTEN_MAX_WEIGHTS = 2**18


def small_linear(in_features: int, out_features: int) -> nn.Linear:
    """A Linear layer starting near zero (weights N(0, 1e-3^2), zero bias): the model's first
    outputs are near-uniform class scores or, with the target standardisation of
    orca/model/scalers.py, near the training mean. A default-initialised head starts from
    confident random outputs and sends random gradients into the pretrained body; an exact
    zero would send none, not even to the embedder."""
    layer = nn.Linear(in_features, out_features)
    nn.init.normal_(layer.weight, std=HEAD_INIT_STD)
    nn.init.zeros_(layer.bias)
    return layer


class MeanPoolLinear(nn.Module):
    """Mean over tokens, then Linear(D, n_out): (B, T, D) -> (B, n_out)."""

    def __init__(self, hidden_size: int, num_outputs: int) -> None:
        super().__init__()
        self.head = small_linear(hidden_size, num_outputs)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.head(h.mean(dim=1))  # (B, D) -> (B, n_out)


class Dense1dHead(nn.Module):
    """Each token -> n_out * s values, unfolded back to the input length L = T * s."""

    def __init__(self, hidden_size: int, num_outputs: int, stride: int) -> None:
        super().__init__()
        self.num_outputs, self.stride = num_outputs, stride
        self.head = small_linear(hidden_size, num_outputs * stride)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        b, t, _ = h.shape
        out = self.head(h).view(b, t, self.num_outputs, self.stride)  # (B, T, n_out, s)
        return out.permute(0, 2, 1, 3).reshape(b, self.num_outputs, t * self.stride)


class Dense2dHead(nn.Module):
    """Each output token -> n_out * ph * pw values, tiled onto the embedder's canvas (a
    linear pixel-shuffle decoder), then fitted to the input's H x W: cropped when the canvas
    is the zero-padded input, resized when the embedder resized the input to the canvas."""

    def __init__(
        self,
        hidden_size: int,
        num_outputs: int,
        patch: int | tuple[int, int],
        grid: tuple[int, int],
        output_hw: tuple[int, int],
        fit: str = "crop",
    ) -> None:
        super().__init__()
        self.patch = (patch, patch) if isinstance(patch, int) else tuple(patch)
        self.num_outputs, self.grid, self.output_hw, self.fit = num_outputs, grid, output_hw, fit
        self.head = small_linear(hidden_size, num_outputs * self.patch[0] * self.patch[1])

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        b = h.shape[0]
        (gh, gw), (ph, pw), n = self.grid, self.patch, self.num_outputs
        out = self.head(h).view(b, gh, gw, n, ph, pw)  # (B, gh, gw, n_out, ph, pw)
        out = out.permute(0, 3, 1, 4, 2, 5).reshape(b, n, gh * ph, gw * pw)
        if self.fit == "resize":
            return F.interpolate(out, size=self.output_hw, mode="bilinear", align_corners=False)
        return out[:, :, : self.output_hw[0], : self.output_hw[1]]  # (B, n_out, H, W)


class FlattenLinear(nn.Module):
    """Every token, concatenated and divided by T, then Linear(T * D, n_out):
    (B, T, D) -> (B, n_out). The 1 / T keeps the effect of an optimizer step on the outputs
    that of MeanPoolLinear (Adam moves every weight by about the lr, and the outputs by the
    lr times the summed input), whatever the number of tokens; without it the predictor's
    warm start overshot in 10 steps at its lr of 1e-2 and kept its zero start."""

    def __init__(self, hidden_size: int, num_tokens: int, num_outputs: int) -> None:
        super().__init__()
        self.num_tokens = num_tokens
        self.head = small_linear(num_tokens * hidden_size, num_outputs)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if h.shape[1] != self.num_tokens:
            raise ValueError(
                f"FlattenLinear was built for {self.num_tokens} body output tokens, "
                f"got {h.shape[1]}"
            )
        return self.head(h.flatten(1) / self.num_tokens)  # (B, T * D) -> (B, n_out)


def body_output_tokens(embedder: nn.Module, body: nn.Module) -> int | None:
    """Tokens the body returns for one example: the embedder's grid as the body maps it
    (vision bodies merge patches), or the embedder's sequence length; None if unknown."""
    grid = getattr(embedder, "grid", None)
    if grid is not None and hasattr(body, "output_grid"):
        height, width = body.output_grid(tuple(grid))
        return int(height * width)
    tokens = getattr(embedder, "num_tokens", None)
    return None if tokens is None else int(tokens)


def _pooled(
    hidden_size: int,
    num_outputs: int,
    *,
    embedder: nn.Module | None = None,
    body: nn.Module | None = None,
    **_: object,
) -> nn.Module:
    tokens = None if embedder is None or body is None else body_output_tokens(embedder, body)
    if tokens is not None and tokens * hidden_size * num_outputs <= FLATTEN_MAX_WEIGHTS:
        return FlattenLinear(hidden_size, tokens, num_outputs)
    return MeanPoolLinear(hidden_size, num_outputs)


for _kind in ("classification", "multilabel", "regression"):
    PREDICTORS.register(_kind, _pooled)


def _require(embedder: nn.Module, attribute: str, output: str, needs: str) -> None:
    if not hasattr(embedder, attribute):
        raise ValueError(
            f"output kind {output!r} needs {needs}; this task's embedder is "
            f"{type(embedder).__name__}"
        )


@PREDICTORS.register("dense1d")
def dense1d_head(
    hidden_size: int, num_outputs: int, *, embedder: nn.Module, **_: object
) -> Dense1dHead:
    _require(embedder, "stride", "dense1d", "a sequence input (modality '1d')")
    return Dense1dHead(hidden_size, num_outputs, embedder.stride)


@PREDICTORS.register("dense2d")
def dense2d_head(
    hidden_size: int, num_outputs: int, *, embedder: nn.Module, body: nn.Module, **_: object
) -> Dense2dHead:
    _require(embedder, "canvas_hw", "dense2d", "an image input (modality '2d')")
    grid = body.output_grid(embedder.grid)
    canvas = embedder.canvas_hw
    if canvas[0] % grid[0] or canvas[1] % grid[1]:
        raise ValueError(
            f"dense2d: the body's output grid {grid} does not tile the {canvas} canvas"
        )
    patch = (canvas[0] // grid[0], canvas[1] // grid[1])
    return Dense2dHead(hidden_size, num_outputs, patch, grid, embedder.input_hw, embedder.fit)
