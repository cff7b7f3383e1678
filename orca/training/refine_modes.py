"""Which parameters stage 3 trains, by mode name.

    full          everything (ORCA)
    fpt           Frozen Pretrained Transformer (Lu et al. 2022): the body's self-attention
                  and feed-forward weights frozen; embedder (input layer and positions),
                  the body's layer norms and the predictor trained
    layernorm     layer norms only (the body's and the embedder's) plus the predictor; the
                  embedder's projection and positions stay at their stage-2 values
    linear_probe  the predictor only

The body's own input embedding (word, position and token-type tables) and its pooler are
never run by OrcaModel, so they never receive a gradient in any mode.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from orca.registry import Registry

REFINE_MODES: Registry[Callable[[str], bool]] = Registry("refine mode")


def _is_layer_norm(name: str) -> bool:
    return "LayerNorm" in name or "layer_norm" in name or ".norm" in name


REFINE_MODES.register("full", lambda name: True)
REFINE_MODES.register(
    "fpt",
    lambda name: not name.startswith("body.") or _is_layer_norm(name),
)
REFINE_MODES.register(
    "layernorm",
    lambda name: name.startswith("predictor.") or _is_layer_norm(name),
)
REFINE_MODES.register("linear_probe", lambda name: name.startswith("predictor."))


def apply_refine_mode(model: nn.Module, mode: str) -> list[str]:
    """Set requires_grad per the mode; return the names of the trainable parameters."""
    trainable = REFINE_MODES.get(mode)
    names = []
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(trainable(name))
        if parameter.requires_grad:
            names.append(name)
    return names
