"""Warm-start the predictor on the frozen model's outputs before fine-tuning (LP-FT).

A freshly initialised predictor sends random gradients into the pretrained body during
the first fine-tuning steps, and on small data those steps distort the features the body
brought (Kumar et al., "Fine-Tuning can Distort Pretrained Features", ICLR 2022). Fitting
the predictor alone first, on the body's outputs for the training split, costs one forward
pass and lets fine-tuning start from a head that already points the right way.

The body's outputs are computed once in eval mode for at most `max_examples` training
examples; then the predictor alone takes `steps` full-batch Adam steps on the task loss.
Only the predictor's parameters change.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

PROBE_LR = 1e-2


@dataclass(frozen=True)
class ProbeWarmStart:
    examples: int
    steps: int
    loss_before: float
    loss_after: float

    def to_dict(self) -> dict[str, float | int]:
        return {
            "examples": self.examples,
            "steps": self.steps,
            "loss_before": self.loss_before,
            "loss_after": self.loss_after,
        }


def warm_start_predictor(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    *,
    steps: int,
    max_examples: int = 2048,
    batch_size: int = 64,
    generator: torch.Generator | None = None,
) -> ProbeWarmStart:
    """Fit `model.predictor` on `model.encode(model.embed(x))` for `steps` Adam steps.

    `model` is an OrcaModel (embed / encode / predict). A seeded subset is used when x has
    more than `max_examples` rows. The model is left in train mode.
    """
    device = next(model.parameters()).device
    if len(x) > max_examples:
        keep = torch.randperm(len(x), generator=generator)[:max_examples]
        x, y = x[keep], y[keep]
    model.eval()
    with torch.no_grad():
        hidden = torch.cat(
            [
                model.encode(model.embed(x[i : i + batch_size].to(device))).float()
                for i in range(0, len(x), batch_size)
            ]
        )  # (N, T, D)
    y = y.to(device)
    parameters = [p for p in model.predictor.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(parameters, lr=PROBE_LR)
    with torch.no_grad():
        before = float(loss_fn(model.predict(hidden).float(), y))
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model.predict(hidden).float(), y).backward()
        optimizer.step()
    with torch.no_grad():
        after = float(loss_fn(model.predict(hidden).float(), y))
    model.zero_grad(set_to_none=True)
    model.train()
    return ProbeWarmStart(len(x), steps, before, after)
