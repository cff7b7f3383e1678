"""Pretrained bodies, by name: wrapped, never edited, with their own input embedding bypassed.

A backbone string names a body in BODIES ("minilm-l6", "roberta-base", "swin-base", ...),
or is a local Hugging Face model directory (a text body), or is NAME@FILE: a registered
vision body with its weights read from a local checkpoint file instead of the hub.

Every body exposes the same interface to the rest of the model:
    kind            "text" or "vision": selects the embedders that fit it
    hidden_size     D, the width of the tokens it takes
    output_size     the width of the tokens it returns
    output_grid(g)  the token grid it returns for an input token grid g (dense 2D heads)
    forward(tokens) (B, T, D) -> (B, T', output_size), its own input embedding not run

The body kinds register their specs (BODIES) and loaders (BODY_LOADERS) in
orca.model.text_body and orca.model.vision_body, which the package's __init__ imports, so
every body is registered once anything in orca.model is imported.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from orca.registry import Registry, UnknownNameError


class BodyWeightsError(RuntimeError):
    """Pretrained weights did not match the body's architecture, could not be read, or
    could not be found (MissingWeightsError)."""


class MissingWeightsError(BodyWeightsError):
    """No pretrained weights were found (offline, no local copy): not a damaged file."""


@dataclass(frozen=True)
class BodySpec:
    """A registered body. `locate` gives a hub id or local directory (text) or a timm
    architecture name (vision); `options` are extra constructor arguments (vision)."""

    name: str
    kind: str  # "text" | "vision"
    locate: Callable[[], str]
    description: str
    options: Mapping[str, Any] = field(default_factory=dict)


def hub_offline() -> bool:
    """Whether HF_HUB_OFFLINE forbids the hub, read as huggingface_hub reads it (1, true,
    yes, on)."""
    import os

    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}


BODIES: Registry[BodySpec] = Registry("backbone")
# kind -> loader(spec or local directory, weights file or None, pretrained) -> body module
BODY_LOADERS: Registry[Callable[..., nn.Module]] = Registry("body kind")


@dataclass(frozen=True)
class BackboneRef:
    """A parsed backbone string."""

    text: str
    spec: BodySpec | None  # None: a local text model directory
    weights_file: Path | None

    @property
    def kind(self) -> str:
        return self.spec.kind if self.spec is not None else "text"


def parse_backbone(text: str) -> BackboneRef:
    """Resolve a backbone string; raise UnknownNameError, FileNotFoundError or ValueError
    naming it (a local directory must hold a Hugging Face config.json)."""
    name, _, weights = text.partition("@")
    if weights:
        if name not in BODIES:
            raise UnknownNameError(
                f"backbone {text!r}: {name!r} is not a registered body; valid backbones: "
                f"{', '.join(BODIES.names())}"
            )
        path = Path(weights).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"backbone {text!r}: weights file {path} does not exist")
        return BackboneRef(text, BODIES.get(name), path)
    if name in BODIES:
        return BackboneRef(text, BODIES.get(name), None)
    if Path(name).expanduser().is_dir():
        _check_model_directory(text, Path(name).expanduser())
        return BackboneRef(text, None, None)
    raise UnknownNameError(
        f"unknown backbone {text!r}; valid backbones: {', '.join(BODIES.names())}, "
        "a path to a local Hugging Face model directory, or NAME@/path/to/weights"
    )


def _check_model_directory(text: str, directory: Path) -> None:
    """A local text body is a Hugging Face model directory: it has a config.json object."""
    import json

    config = directory / "config.json"
    expected = (
        "expected a Hugging Face model directory (config.json and model.safetensors or "
        "pytorch_model.bin, as save_pretrained writes them)"
    )
    if not config.is_file():
        raise FileNotFoundError(f"backbone {text!r}: {config} does not exist; {expected}")
    try:
        content = json.loads(config.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise ValueError(
            f"backbone {text!r}: {config} is not valid JSON ({err}); {expected}"
        ) from err
    if not isinstance(content, dict):
        raise ValueError(f"backbone {text!r}: {config} is not a JSON object; {expected}")


def check_backbone_name(text: str) -> None:
    parse_backbone(text)


def backbone_kind(text: str) -> str:
    return parse_backbone(text).kind


def load_body(text: str, *, pretrained: bool = True) -> nn.Module:
    """Build the body a backbone string names. pretrained=False gives the same
    architecture with random weights (the from-scratch baseline)."""
    ref = parse_backbone(text)
    return BODY_LOADERS.get(ref.kind)(ref, pretrained=pretrained)


def check_state_dict(
    expected: Mapping[str, torch.Tensor],
    found: Mapping[str, torch.Tensor],
    source: str,
    ignored_prefixes: tuple[str, ...] = (),
) -> None:
    """Raise BodyWeightsError listing missing, unexpected and wrongly shaped keys."""

    def keep(key: str) -> bool:
        return not key.startswith(ignored_prefixes)

    want = {k: tuple(v.shape) for k, v in expected.items() if keep(k)}
    have = {k: tuple(v.shape) for k, v in found.items() if keep(k)}
    problems = {
        "missing_keys": sorted(set(want) - set(have)),
        "unexpected_keys": sorted(set(have) - set(want)),
        "mismatched_keys": sorted(
            f"{k} (file {have[k]}, model {want[k]})"
            for k in set(want) & set(have)
            if want[k] != have[k]
        ),
    }
    if any(problems.values()):
        details = "; ".join(f"{kind}: {', '.join(keys)}" for kind, keys in problems.items() if keys)
        raise BodyWeightsError(f"weights at {source} do not match the architecture: {details}")
