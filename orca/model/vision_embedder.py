"""Embedders for a vision body: images (2D) and series (1D), laid out on the body's own grid.

Both put their tokens on the patch grid the body was pretrained on, (gh, gw) at its image
size, so the body runs exactly as in pretraining: for Swin, the same windows, shifts and
relative-position tables in every stage; nothing in the body is resized or re-initialised.

2D, `VisionPatchEmbedder`: (B, C, H, W) is resized (bilinear) to the body's image size; a
Conv2d with the body's patch size and stride makes the tokens, followed by copies of the
body's patch norm and patch position table. The conv starts from the body's pretrained patch
projection, tiled over the input channels (`tile_input_channels`).

1D, `VisionSequenceEmbedder`: (B, C, L) -> (B, gh*gw, D). The series is cut into gh*gw
consecutive segments of s samples, one token each, in the body's row-major token order: time
runs along a grid row and wraps to the next one. Layout rule, fixed at build time from L:
    s      = ceil(L / (gh*gw))   samples per token (1 when the series is shorter than the grid)
    canvas = gh*gw*s             the series' length on the grid; canvas >= L always
    fit    = L == canvas: used as is; otherwise resampled (linear interpolation, the 1D
             analogue of the 2D embedder's bilinear resize) from L to canvas samples.
The series is only ever stretched, by less than (L + gh*gw) / L: never cropped (no sample is
lost) and never zero-padded (no token is padding; a short series on Swin-B's 56 x 56 grid
would otherwise be mostly padding tokens, which dominate the mean-pooled features that
stage 2 aligns). A Conv1d(C, D, kernel=stride=s) makes the tokens, then a LayerNorm and a
fresh position table, as in the authors' 1D embedder (`Embeddings1D` in their
src/embedder.py, which they use for every body): the conv is Xavier-initialised (bias as in
orca.model.embedders), the LayerNorm is a copy of the body's patch LayerNorm (Swin) or a
default one when the body's patch embedding has no norm (ViT), and the positions are a new
(gh*gw, D) table drawn from N(0, 1) (nn.Embedding's initialisation, which theirs uses).
A body's own 2D patch weights are not used: a (D, 3, p, p) image filter has no meaning for
a segment of a series.

How this differs from the authors' code: their 1D embedder for Swin picks the smallest
stride s dividing L with L/s a perfect square n*n <= 1024 and runs Swin on that n x n grid
(Hugging Face Swin pads each stage to whole windows). orca keeps the pretrained grid
instead: timm's Swin builds its shift masks for one grid, and a stage smaller than its window
has its relative-position tables interpolated (an edit of the body). The proxy is the vision
body's (CIFAR-10, or the packaged MNIST sample offline: orca.proxy.datasets), featurised by
the body's own patch embedding, whatever the task's modality.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn import functional as F

from orca.model.embedders import EMBEDDERS, _init_projection

MIN_SERIES_LENGTH = 2


def tile_input_channels(weight: torch.Tensor, channels: int) -> torch.Tensor:
    """Adapt a (D, C0, p, p) patch projection to `channels` inputs.

    One channel gets the sum over C0, so a grey image gives what the RGB image with equal
    channels gave. Otherwise the C0 filters repeat cyclically over the channels and are
    scaled by C0 / channels, which keeps the response to a constant image unchanged when
    channels is a multiple of C0 and of the same magnitude otherwise.
    """
    original = weight.shape[1]
    if channels == original:
        return weight.clone()
    if channels == 1:
        return weight.sum(dim=1, keepdim=True)
    repeats = -(-channels // original)
    tiled = weight.repeat(1, repeats, 1, 1)[:, :channels]  # (D, channels, p, p)
    return tiled * (original / channels)


class VisionPatchEmbedder(nn.Module):
    """(B, C, H, W) -> (B, gh*gw, D) tokens laid out as the vision body's patch grid."""

    def __init__(self, in_channels: int, input_hw: tuple[int, int], body) -> None:
        super().__init__()
        self.input_hw = tuple(input_hw)
        self.canvas_hw = body.image_size
        self.grid = body.grid
        self.fit = "resize"  # dense heads resize their canvas back to input_hw
        source = body.patch_projection
        self.projection = nn.Conv2d(
            in_channels,
            source.out_channels,
            kernel_size=source.kernel_size,
            stride=source.stride,
        )
        with torch.no_grad():
            self.projection.weight.copy_(tile_input_channels(source.weight, in_channels))
            self.projection.bias.copy_(source.bias)
        self.norm = copy.deepcopy(body.patch_norm)
        positions = body.patch_positions
        self.positions = None if positions is None else nn.Parameter(positions.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) != self.canvas_hw:
            x = F.interpolate(x, size=self.canvas_hw, mode="bilinear", align_corners=False)
        h = self.projection(x).flatten(2).transpose(1, 2)  # (B, D, gh, gw) -> (B, gh*gw, D)
        h = self.norm(h)
        return h if self.positions is None else h + self.positions  # + (1, gh*gw, D)


@EMBEDDERS.register("vision/2d")
def vision_embedder_for(body, input_shape: tuple[int, ...], max_seq_len: int) -> nn.Module:
    """Build the 2D embedder for a (C, H, W) input around a vision body; the token count
    is the body's own grid, so `max_seq_len` does not apply."""
    if len(input_shape) != 3:
        raise ValueError(f"vision 2d embedder expects input_shape (C, H, W), got {input_shape}")
    in_channels, height, width = input_shape
    return VisionPatchEmbedder(in_channels, (height, width), body)


def sequence_layout(length: int, grid: tuple[int, int]) -> tuple[int, int]:
    """(samples per token s, canvas length gh*gw*s) for a series of `length` on `grid`."""
    tokens = grid[0] * grid[1]
    segment = -(-length // tokens)
    return segment, tokens * segment


def sequence_norm(body, hidden_size: int) -> nn.LayerNorm:
    """A copy of the body's patch LayerNorm when it has one of width D, else a default one."""
    norm = body.patch_norm
    if isinstance(norm, nn.LayerNorm) and tuple(norm.normalized_shape) == (hidden_size,):
        return copy.deepcopy(norm)
    return nn.LayerNorm(hidden_size)


class VisionSequenceEmbedder(nn.Module):
    """(B, C, L) -> (B, gh*gw, D): the series fitted to gh*gw segments of s samples (see the
    module docstring), strided Conv1d, LayerNorm, + a fresh position table."""

    def __init__(self, in_channels: int, length: int, body) -> None:
        super().__init__()
        self.input_shape = (in_channels, length)
        self.grid = body.grid
        self.segment, self.canvas_length = sequence_layout(length, self.grid)
        self.fit = "as is" if self.canvas_length == length else "resample"
        hidden_size = body.hidden_size
        self.projection = nn.Conv1d(
            in_channels, hidden_size, kernel_size=self.segment, stride=self.segment
        )
        _init_projection(self.projection)
        self.norm = sequence_norm(body, hidden_size)
        num_tokens = self.grid[0] * self.grid[1]
        self.positions = nn.Parameter(torch.randn(num_tokens, hidden_size))  # N(0, 1)

    def fit_to_canvas(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, L) -> (B, C, canvas): the layout rule's resampling, or x itself."""
        if tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(
                f"vision 1d embedder was built for series of shape (C, L) = "
                f"{self.input_shape}, got a batch of shape {tuple(x.shape)}"
            )
        if self.fit == "as is":
            return x
        return F.interpolate(x, size=self.canvas_length, mode="linear", align_corners=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.projection(self.fit_to_canvas(x))  # (B, D, gh*gw)
        return self.norm(h.transpose(1, 2)) + self.positions  # (B, gh*gw, D) + (gh*gw, D)


@EMBEDDERS.register("vision/1d")
def vision_sequence_embedder_for(
    body, input_shape: tuple[int, ...], max_seq_len: int
) -> VisionSequenceEmbedder:
    """Build the 1D embedder for a (C, L) input around a vision body; the token count is
    the body's own grid, so `max_seq_len` does not apply."""
    if len(input_shape) != 2:
        raise ValueError(f"vision 1d embedder expects input_shape (C, L), got {tuple(input_shape)}")
    in_channels, length = input_shape
    if in_channels < 1 or length < MIN_SERIES_LENGTH:
        raise ValueError(
            f"vision 1d embedder: input_shape (C, L) = {tuple(input_shape)} needs C >= 1 "
            f"channel and L >= {MIN_SERIES_LENGTH} samples"
        )
    return VisionSequenceEmbedder(in_channels, length, body)
