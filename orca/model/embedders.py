"""Stage 1 embedders: map a task's inputs into the body's token space, (B, T, D).

The 1D embedder follows the paper: a strided Conv1d whose stride s is the smallest divisor
of the input length L with L/s <= the sequence limit, then a LayerNorm and the body's
positional embeddings, both copied from the pretrained body. The conv is Xavier-initialised.
Its bias is drawn from the same range as the weights: with a zero bias the LayerNorm makes
each token blind to the scale of its input window, and PyTorch's default bias range is ~10x
the weights' output for unit-scale inputs, which makes every token start as LayerNorm(bias).

This is orca's initialisation; stage 2 may replace it by the authors' (AlignConfig.embedder_init,
orca.model.embedder_init), which differs in the conv (Xavier with gain sqrt(2), zero bias)
and, when stage 2 is skipped, the LayerNorm (PyTorch's default, not the body's).

EMBEDDERS holds one factory per "body kind/input modality". The text-body embedders are
here; the vision-body one is in orca.model.vision_embedder, which the package's __init__
imports, so every embedder is registered once anything in orca.model is imported.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn

from orca.registry import Registry

EMBEDDERS: Registry[Callable[..., nn.Module]] = Registry("embedder")


def choose_stride(length: int, max_tokens: int) -> int:
    """Smallest divisor s of `length` such that length / s <= max_tokens.

    Raises ValueError when only s = length fits (a series longer than the limit whose
    length has no usable divisor, e.g. a prime): one token per series carries no sequence.
    """
    if length < 1 or max_tokens < 1:
        raise ValueError(f"length={length} and max_tokens={max_tokens} must be positive")
    for stride in range(1, length + 1):
        if length % stride == 0 and length // stride <= max_tokens:
            if stride == length and length > 1:
                break
            return stride
    suggestion = -(-length // max_tokens) * max_tokens
    raise ValueError(
        f"input length {length} has no stride that fits the body's {max_tokens}-token limit "
        f"with more than one token (its only divisor s with {length}/s <= {max_tokens} is "
        f"{length} itself); pad or crop the series, e.g. to length {suggestion}"
    )


def _init_projection(conv: nn.Conv1d | nn.Conv2d) -> None:
    """Xavier-uniform weights; bias drawn from the same range (see the module docstring)."""
    nn.init.xavier_uniform_(conv.weight)
    receptive = conv.weight[0, 0].numel()
    fan_in, fan_out = conv.in_channels * receptive, conv.out_channels * receptive
    bound = (6.0 / (fan_in + fan_out)) ** 0.5
    nn.init.uniform_(conv.bias, -bound, bound)


def _attach_body_layers(
    module: nn.Module,
    norm: nn.LayerNorm,
    positions: nn.Embedding,
    num_tokens: int,
    position_offset: int,
) -> None:
    """Give `module` copies of the body's LayerNorm and position table, and its position ids."""
    module.norm = copy.deepcopy(norm)
    module.positions = copy.deepcopy(positions)
    position_ids = torch.arange(num_tokens) + position_offset
    module.register_buffer("position_ids", position_ids, persistent=False)


class Conv1dEmbedder(nn.Module):
    """(B, C, L) -> (B, L/s, D): strided conv, LayerNorm, + body position embeddings."""

    def __init__(
        self,
        in_channels: int,
        length: int,
        hidden_size: int,
        max_tokens: int,
        norm: nn.LayerNorm,
        positions: nn.Embedding,
        position_offset: int = 0,
    ) -> None:
        super().__init__()
        self.stride = choose_stride(length, max_tokens)
        self.num_tokens = length // self.stride
        self.projection = nn.Conv1d(
            in_channels, hidden_size, kernel_size=self.stride, stride=self.stride
        )
        _init_projection(self.projection)
        _attach_body_layers(self, norm, positions, self.num_tokens, position_offset)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.projection(x)  # (B, D, T)
        h = h.transpose(1, 2)  # (B, T, D)
        h = self.norm(h)
        return h + self.positions(self.position_ids)  # (B, T, D) + (T, D)


@EMBEDDERS.register("text/1d")
def conv1d_embedder_for(body, input_shape: tuple[int, ...], max_seq_len: int) -> Conv1dEmbedder:
    """Build the 1D embedder for a (C, L) input around a text body."""
    if len(input_shape) != 2:
        raise ValueError(f"1d embedder expects input_shape (C, L), got {tuple(input_shape)}")
    in_channels, length = input_shape
    return Conv1dEmbedder(
        in_channels,
        length,
        body.hidden_size,
        max_tokens=min(max_seq_len, body.max_positions),
        norm=body.embedding_norm,
        positions=body.position_embeddings,
        position_offset=body.position_offset,
    )


def choose_patch(height: int, width: int, max_tokens: int) -> int:
    """Smallest patch size p with ceil(H/p) * ceil(W/p) <= max_tokens."""
    for patch in range(1, max(height, width) + 1):
        if -(-height // patch) * -(-width // patch) <= max_tokens:
            return patch
    return max(height, width)


class Conv2dTokenEmbedder(nn.Module):
    """(B, C, H, W) -> (B, gh*gw, D) for a text body: zero-pad H and W up to multiples of
    the patch size p, Conv2d(C, D, kernel=stride=p), flatten the grid row-major, LayerNorm,
    + body position embeddings (all copied from the body, as in the 1D embedder)."""

    def __init__(
        self,
        in_channels: int,
        height: int,
        width: int,
        hidden_size: int,
        max_tokens: int,
        norm: nn.LayerNorm,
        positions: nn.Embedding,
        position_offset: int = 0,
    ) -> None:
        super().__init__()
        self.input_hw = (height, width)
        self.patch = choose_patch(height, width, max_tokens)
        self.grid = (-(-height // self.patch), -(-width // self.patch))
        # Dense heads map tokens onto this zero-padded canvas, then crop it to input_hw.
        self.canvas_hw = (self.grid[0] * self.patch, self.grid[1] * self.patch)
        self.fit = "crop"
        self.projection = nn.Conv2d(in_channels, hidden_size, self.patch, stride=self.patch)
        _init_projection(self.projection)
        num_tokens = self.grid[0] * self.grid[1]
        _attach_body_layers(self, norm, positions, num_tokens, position_offset)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad_h = self.grid[0] * self.patch - x.shape[-2]
        pad_w = self.grid[1] * self.patch - x.shape[-1]
        x = nn.functional.pad(x, (0, pad_w, 0, pad_h))  # (B, C, gh*p, gw*p)
        h = self.projection(x).flatten(2).transpose(1, 2)  # (B, D, gh, gw) -> (B, gh*gw, D)
        return self.norm(h) + self.positions(self.position_ids)


@EMBEDDERS.register("text/2d")
def conv2d_embedder_for(body, input_shape: tuple[int, ...], max_seq_len: int) -> nn.Module:
    """Build the 2D embedder for a (C, H, W) input around a text body."""
    if len(input_shape) != 3:
        raise ValueError(f"2d embedder expects input_shape (C, H, W), got {tuple(input_shape)}")
    in_channels, height, width = input_shape
    return Conv2dTokenEmbedder(
        in_channels,
        height,
        width,
        body.hidden_size,
        max_tokens=min(max_seq_len, body.max_positions),
        norm=body.embedding_norm,
        positions=body.position_embeddings,
        position_offset=body.position_offset,
    )


@EMBEDDERS.register("text/tabular")
def tabular_embedder_for(body, input_shape: tuple[int, ...], max_seq_len: int) -> nn.Module:
    """One token per feature: input (C, F), C = 1 for numeric features or the widest
    one-hot width for categoricals; a stride-1 conv is a per-feature Linear(C, D)."""
    if len(input_shape) != 2:
        raise ValueError(f"tabular embedder expects input_shape (C, F), got {input_shape}")
    channels, features = input_shape
    if features > body.max_positions:
        raise ValueError(
            f"tabular input has {features} features but the body has only "
            f"{body.max_positions} positions (one token per feature)"
        )
    return Conv1dEmbedder(
        channels,
        features,
        body.hidden_size,
        max_tokens=features,
        norm=body.embedding_norm,
        positions=body.position_embeddings,
        position_offset=body.position_offset,
    )
