"""The 2D embedder for a vision body: resize, then the body's own patching, re-learned.

(B, C, H, W) is resized (bilinear) to the body's image size, so the patch grid and, for
Swin, the window grid are exactly the ones it was pretrained on. A Conv2d with the body's
patch size and stride then makes the tokens, followed by copies of the body's patch norm
and patch position table. The conv starts from the body's pretrained patch projection,
tiled over the input channels (`tile_input_channels`).
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn import functional as F

from orca.model.embedders import EMBEDDERS


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
