"""How stage 2's embedder starts, by name (AlignConfig.embedder_init): EMBEDDER_INITS.

Every embedder is built by its EMBEDDERS factory with orca's initialisation. Stage 2 then
applies the chosen scheme to the model's embedder, once, before training, or with 0 epochs
before saving it (the methods that skip stage 2 fine-tune that embedder):

    orca   nothing changes: the initialisation of orca.model.embedders and
           orca.model.vision_embedder.
    paper  the authors' (`Embeddings1D`, `Embeddings2D` and `embedder_init` in
           sjunhongshen/ORCA src/embedder.py and src/utils.py). It depends on whether
           stage 2 trains the embedder, as theirs does on embedder_epochs > 0:
           trained
             - a Conv2d over a vision body's patches: the body's patch projection, its
               filters repeated cyclically over the input channels and NOT rescaled (their
               torch.cat of copies, sliced), and the body's bias;
             - any other conv (1D tasks, a text body's 2D patches): Xavier-uniform with
               gain sqrt(2) and a zero bias (their `conv_init`);
             - LayerNorm and position table: as built, i.e. copies of the body's (a text
               body's LayerNorm and position table; a vision body's patch LayerNorm; the
               fresh N(0, 1) table of a vision body's 1D embedder, as their Embeddings1D).
           not trained (their no-align ablation)
             - Conv2d and Linear: truncated normal, std 0.02, zero bias; Conv1d: Xavier
               with gain sqrt(2), zero bias (their loop re-draws only Conv2d and Linear);
             - every LayerNorm: weight 1, bias 0 (not the body's);
             - position table: as built. Their code copies a text body's table in this
               case too (`target.position_embeddings = copy.deepcopy(...)` in both
               branches); a Swin body has none.

Random draws come from a CPU generator seeded by the stage's seed and are copied into the
parameters, so a run initialises alike on the CPU and on a GPU.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from orca.registry import Registry

# (embedder, body, trained, generator) -> None, changing the embedder in place
EmbedderInit = Callable[[nn.Module, nn.Module, bool, torch.Generator], None]
EMBEDDER_INITS: Registry[EmbedderInit] = Registry("embedder initialisation")

CONV_GAIN = math.sqrt(2.0)  # the authors' conv_init: xavier_uniform_(gain=sqrt(2)), bias 0
UNTRAINED_STD = 0.02  # their no-align embedder: trunc_normal_(std=.02) for Conv2d and Linear


def _set(parameter: torch.Tensor, values: torch.Tensor) -> None:
    with torch.no_grad():
        parameter.copy_(values.to(dtype=parameter.dtype))


def _drawn(parameter: torch.Tensor, draw: Callable[[torch.Tensor], object]) -> None:
    """Fill `parameter` with values `draw` writes into a CPU float32 tensor of its shape."""
    values = torch.empty(parameter.shape, dtype=torch.float32)
    draw(values)
    _set(parameter, values)


def _zero_bias(module: nn.Module) -> None:
    if getattr(module, "bias", None) is not None:
        _set(module.bias, torch.zeros(module.bias.shape))


def xavier_conv(module: nn.Module, generator: torch.Generator) -> None:
    """Their conv_init: Xavier-uniform weights with gain sqrt(2), zero bias."""
    _drawn(
        module.weight,
        lambda t: nn.init.xavier_uniform_(t, gain=CONV_GAIN, generator=generator),
    )
    _zero_bias(module)


def truncated_normal(module: nn.Module, generator: torch.Generator) -> None:
    """Their no-align Conv2d / Linear: truncated normal (std 0.02), zero bias."""
    _drawn(
        module.weight,
        lambda t: nn.init.trunc_normal_(t, std=UNTRAINED_STD, generator=generator),
    )
    _zero_bias(module)


def default_norm(module: nn.Module, generator: torch.Generator) -> None:
    """A LayerNorm as PyTorch builds it: weight 1, bias 0."""
    if module.weight is not None:
        _set(module.weight, torch.ones(module.weight.shape))
    _zero_bias(module)


# module type -> the authors' initialisation of it in their no-align embedder
UNTRAINED_RULES: dict[type[nn.Module], Callable[[nn.Module, torch.Generator], None]] = {
    nn.Conv1d: xavier_conv,
    nn.Conv2d: truncated_normal,
    nn.Linear: truncated_normal,
    nn.LayerNorm: default_norm,
}


def repeat_channels(weight: torch.Tensor, channels: int) -> torch.Tensor:
    """Their adaptation of a (D, C0, p, p) patch projection to `channels` inputs: the C0
    filters repeated cyclically (channel k gets filter k mod C0), not rescaled."""
    copies = channels // weight.shape[1] + 1
    return torch.cat([weight] * copies, dim=1)[:, :channels]


def body_patches(projection: nn.Conv2d, body: nn.Module) -> None:
    """Start a vision body's patch conv from the body's own patch projection."""
    source = body.patch_projection
    weight = repeat_channels(source.weight.detach(), projection.in_channels)
    kernel = projection.weight.shape[-2:]
    _set(projection.weight, weight[..., : kernel[0], : kernel[1]])
    if projection.bias is not None and source.bias is not None:
        _set(projection.bias, source.bias.detach())


def _over_body_patches(projection: nn.Module, body: nn.Module) -> bool:
    return (
        isinstance(projection, nn.Conv2d)
        and getattr(body, "patch_projection", None) is not None
        and tuple(projection.weight.shape[-2:]) == tuple(body.patch_projection.weight.shape[-2:])
    )


@EMBEDDER_INITS.register("orca")
def orca_init(embedder: nn.Module, body: nn.Module, trained: bool, generator) -> None:
    """orca's initialisation, as the embedder was built: nothing to do."""


@EMBEDDER_INITS.register("paper")
def paper_init(embedder: nn.Module, body: nn.Module, trained: bool, generator) -> None:
    """The authors' initialisation (see the module docstring)."""
    if not trained:
        for module in embedder.modules():
            rule = UNTRAINED_RULES.get(type(module))
            if rule is not None:
                rule(module, generator)
        return
    projection = getattr(embedder, "projection", None)
    if not isinstance(projection, (nn.Conv1d, nn.Conv2d)):
        raise ValueError(
            f"embedder_init 'paper': the {type(embedder).__name__} has no conv `projection` "
            "to initialise; use embedder_init 'orca'"
        )
    if _over_body_patches(projection, body):
        body_patches(projection, body)
    else:
        xavier_conv(projection, generator)


def initialise_embedder(model: nn.Module, scheme: str, *, trained: bool, seed: int) -> None:
    """Apply EMBEDDER_INITS[`scheme`] to `model.embedder` (an OrcaModel's) in place;
    `trained`: stage 2 will train it (epochs > 0). An unknown scheme raises, listing them."""
    initialise = EMBEDDER_INITS.get(scheme)
    initialise(model.embedder, model.body, trained, torch.Generator().manual_seed(seed))
