"""Vision bodies: timm Swin and ViT, with their patch embedding bypassed.

The ORCA embedders of orca.model.vision_embedder replace the body's patch embedding: the 2D
one is initialised from it (VisionPatchEmbedder), the 1D one lays a series out on the same
token grid (VisionSequenceEmbedder). Either way the body gets its own pretrained grid of
tokens and runs everything after the patch embedding, unchanged. Weights come from the
hub through timm, or from a local checkpoint file (NAME@FILE: safetensors, or a torch
pickle holding a state dict). A local file is passed through timm's own checkpoint filter
for the architecture (key renames, position-table resizing), then its key set and shapes
are checked against the model and every mismatch is listed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

from orca.model.bodies import (
    BODIES,
    BODY_LOADERS,
    BackboneRef,
    BodySpec,
    BodyWeightsError,
    MissingWeightsError,
    check_state_dict,
)
from orca.registry import Registry

# Keys of the ImageNet classifier, which ORCA replaces with its own predictor.
IGNORED_KEY_PREFIXES = ("head.",)

for _spec in (
    BodySpec(
        "swin-base",
        "vision",
        lambda: "swin_base_patch4_window7_224.ms_in22k",
        "Swin-B, patch 4, window 7, 224px, ImageNet-22k: the paper's vision body",
    ),
    BodySpec(
        "swin-tiny",
        "vision",
        lambda: "swin_tiny_patch4_window7_224.ms_in1k",
        "Swin-T, patch 4, window 7, 224px, ImageNet-1k",
    ),
    BodySpec(
        "vit-base",
        "vision",
        lambda: "vit_base_patch16_224.augreg2_in21k_ft_in1k",
        "ViT-B/16, 224px, ImageNet-21k then 1k",
    ),
):
    BODIES.register(_spec.name, _spec)


class VisionBody(nn.Module):
    """A timm vision transformer after its patch embedding. Subclasses say how tokens run
    through each family's stages."""

    kind = "vision"

    def __init__(self, model: nn.Module, source: str) -> None:
        super().__init__()
        self.model = model
        self.source = source

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.model.patch_embed.img_size)

    @property
    def patch_size(self) -> tuple[int, int]:
        return tuple(self.model.patch_embed.patch_size)

    @property
    def grid(self) -> tuple[int, int]:
        """Token grid the patch embedding makes at image_size."""
        return tuple(self.model.patch_embed.grid_size)

    @property
    def hidden_size(self) -> int:
        return int(self.model.patch_embed.proj.out_channels)

    @property
    def output_size(self) -> int:
        return int(self.model.num_features)

    def output_grid(self, grid: tuple[int, int]) -> tuple[int, int]:
        reduction = int(self.model.feature_info[-1]["reduction"]) // self.patch_size[0]
        return (grid[0] // reduction, grid[1] // reduction)

    @property
    def patch_projection(self) -> nn.Conv2d:
        return self.model.patch_embed.proj

    @property
    def patch_norm(self) -> nn.Module:
        return self.model.patch_embed.norm

    @property
    def patch_positions(self) -> torch.Tensor | None:
        """Position table of the patch tokens, (1, T, D), or None if the family has none."""
        return None

    def input_embeddings(self, images: torch.Tensor) -> torch.Tensor:
        """The body's own patch embedding (+ positions): (B, 3, H, W) -> (B, T, D)."""
        tokens = self.patch_norm(self.patch_projection(images).flatten(2).transpose(1, 2))
        positions = self.patch_positions
        return tokens if positions is None else tokens + positions


class ViTBody(VisionBody):
    """ViT: prefix tokens (class, registers) and their positions are the body's own and
    are prepended here; the outputs at the patch positions are returned."""

    @property
    def patch_positions(self) -> torch.Tensor | None:
        table = self.model.pos_embed
        if table is None:
            return None
        return table if self.model.no_embed_class else table[:, self.model.num_prefix_tokens :]

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        model, batch = self.model, tokens.shape[0]
        prefix = [
            t.expand(batch, -1, -1) for t in (model.cls_token, model.reg_token) if t is not None
        ]
        if prefix and model.pos_embed is not None and not model.no_embed_class:
            prefix_positions = model.pos_embed[:, : model.num_prefix_tokens]
            prefix = [torch.cat(prefix, dim=1) + prefix_positions]
        x = torch.cat([*prefix, tokens], dim=1)  # (B, prefix + T, D)
        x = model.norm(model.blocks(model.norm_pre(x)))
        return x[:, model.num_prefix_tokens :]  # (B, T, D)


class SwinBody(VisionBody):
    """Swin: tokens go back onto their (gh, gw) grid for the windowed stages."""

    @property
    def patch_positions(self) -> torch.Tensor | None:
        table = getattr(self.model, "absolute_pos_embed", None)
        return None if table is None else table.flatten(1, -2)  # (1, T, D)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        gh, gw = self.grid
        if tokens.shape[1] != gh * gw:
            raise ValueError(
                f"the Swin body takes its {gh} x {gw} grid of tokens ({gh * gw}), got "
                f"{tokens.shape[1]}"
            )
        x = tokens.reshape(tokens.shape[0], gh, gw, tokens.shape[-1])  # (B, gh, gw, D)
        x = self.model.norm(self.model.layers(x))  # (B, gh', gw', D')
        return x.flatten(1, 2)  # (B, gh' * gw', D')


# timm model class name -> wrapper
VISION_FAMILIES: Registry[type[VisionBody]] = Registry("vision body family")
VISION_FAMILIES.register("VisionTransformer", ViTBody)
VISION_FAMILIES.register("SwinTransformer", SwinBody)


def read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from a safetensors file or a torch pickle (unwrapping a 'model' or
    'state_dict' entry); never executes pickled code."""
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError) as err:
            raise BodyWeightsError(
                f"{path}: not a readable safetensors checkpoint ({err}); expected a state dict "
                "saved with safetensors.torch.save_file"
            ) from err
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for unreadable files
        raise BodyWeightsError(f"{path}: not a readable checkpoint ({err})") from err
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise BodyWeightsError(f"{path}: expected a state dict of tensors")
    return state


def _family(model: nn.Module, ref: BackboneRef) -> type[VisionBody]:
    name = type(model).__name__
    if name not in VISION_FAMILIES:
        raise BodyWeightsError(
            f"backbone {ref.text!r}: timm class {name} is not supported; supported: "
            f"{', '.join(VISION_FAMILIES.names())}"
        )
    return VISION_FAMILIES.get(name)


@BODY_LOADERS.register("vision")
def load_vision_body(ref: BackboneRef, *, pretrained: bool = True) -> VisionBody:
    import timm

    arch = ref.spec.locate()
    options = dict(ref.spec.options)
    from_hub = pretrained and ref.weights_file is None
    try:
        model = timm.create_model(arch, pretrained=from_hub, num_classes=0, **options)
    except (OSError, RuntimeError, ValueError) as err:
        if not from_hub:
            raise
        raise MissingWeightsError(
            f"backbone {ref.text!r}: could not fetch {arch} weights from the hub ({err}). "
            f"Offline, pass {ref.spec.name}@/path/to/weights.safetensors"
        ) from err
    family = _family(model, ref)
    if pretrained and ref.weights_file is not None:
        state = read_checkpoint(ref.weights_file)
        timm_filter = getattr(sys.modules[type(model).__module__], "checkpoint_filter_fn", None)
        if timm_filter is not None:
            state = timm_filter(state, model)
        state = {k: v for k, v in state.items() if not k.startswith(IGNORED_KEY_PREFIXES)}
        check_state_dict(model.state_dict(), state, str(ref.weights_file), IGNORED_KEY_PREFIXES)
        model.load_state_dict(state, strict=False)  # head.* only may be absent: checked above
    return family(model, str(ref.weights_file or arch))
