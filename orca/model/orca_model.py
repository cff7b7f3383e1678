"""OrcaModel = predictor . body . embedder, with each stage callable on its own."""

from __future__ import annotations

import torch
from torch import nn

from orca.model.bodies import load_body
from orca.model.embedders import EMBEDDERS
from orca.model.predictors import PREDICTORS
from orca.model.scalers import INPUT_POOLED_AXES, INPUT_STD_FLOOR, Standardizer, target_shape


class OrcaModel(nn.Module):
    """predictor . body . embedder, with the task's input and target standardisation
    (orca/model/scalers.py) around them when `input_scaler` / `target_scaler` are given."""

    def __init__(
        self,
        embedder: nn.Module,
        body: nn.Module,
        predictor: nn.Module,
        input_scaler: Standardizer | None = None,
        target_scaler: Standardizer | None = None,
        modality: str = "1d",
    ) -> None:
        super().__init__()
        self.embedder = embedder
        self.body = body
        self.predictor = predictor
        self.input_scaler = input_scaler
        self.target_scaler = target_scaler
        self.modality = modality

    def fit_scalers(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Fit the standardisation on the training split (deterministic: the align and
        refine stages each fit it on the same rows and get the same buffers)."""
        if self.input_scaler is not None:
            self.input_scaler.fit(x, INPUT_POOLED_AXES[self.modality], INPUT_STD_FLOOR)
        if self.target_scaler is not None:
            self.target_scaler.fit(y.reshape(len(y), *self.target_scaler.mean.shape))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Task input -> body tokens (B, T, D). Stage 2 trains this alone."""
        if self.input_scaler is not None:
            x = self.input_scaler(x)
        return self.embedder(x)

    def encode(self, tokens: torch.Tensor) -> torch.Tensor:
        """Body tokens (B, T, D) -> contextual tokens (B, T, D)."""
        return self.body(tokens)

    def predict(self, hidden: torch.Tensor) -> torch.Tensor:
        """Contextual tokens (B, T, D) -> task outputs, in the targets' own units."""
        out = self.predictor(hidden)
        if self.target_scaler is not None:
            out = self.target_scaler.inverse(out.reshape(len(out), *self.target_scaler.mean.shape))
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.predict(self.encode(self.embed(x)))


def set_body_dropout(model: OrcaModel, probability: float) -> int:
    """Set every dropout layer of the body to `probability` (the authors fine-tune with 0);
    returns how many layers were set. Stochastic depth (timm's DropPath) is left alone."""
    count = 0
    for module in model.body.modules():
        if isinstance(module, nn.Dropout):
            module.p = probability
            count += 1
    return count


def create_model(
    task,
    backbone: str,
    *,
    pretrained: bool = True,
    seed: int = 0,
    body: nn.Module | None = None,
) -> OrcaModel:
    """Build the model for a TaskSpec around a named body.

    The embedder and predictor are initialised from `seed`, so that the align, refine and
    evaluate stages rebuild the same architecture and then load their saved weights. A text
    body's token table is released: the embedder replaces it.
    """
    body = body if body is not None else load_body(backbone, pretrained=pretrained)
    embedder_name = f"{body.kind}/{task.modality}"
    if embedder_name not in EMBEDDERS:
        raise ValueError(
            f"task {task.name!r}: a {body.kind} body takes no {task.modality!r} input; "
            f"supported body/input pairs: {', '.join(EMBEDDERS.names())}"
        )
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        embedder = EMBEDDERS.get(embedder_name)(body, task.input_shape, task.max_seq_len)
        predictor = PREDICTORS.get(task.output)(
            body.output_size, task.num_outputs, embedder=embedder, body=body
        )
    finally:
        torch.random.set_rng_state(generator_state)
    release = getattr(body, "release_token_table", None)  # text bodies: their tokens are ours
    if release is not None:
        release()
    targets = target_shape(task)
    return OrcaModel(
        embedder,
        body,
        predictor,
        input_scaler=Standardizer(tuple(task.input_shape)),
        target_scaler=Standardizer(targets) if targets is not None else None,
        modality=task.modality,
    )
