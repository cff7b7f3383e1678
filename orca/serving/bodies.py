"""How each kind of body is written into a model package and built again from it.

A package's weights file holds every weight of the model, the body's included, so a body is
rebuilt from its architecture alone: a text body from the Hugging Face config.json written
next to the weights, a vision body from its timm architecture name and options. Neither
needs the hub, a local model directory or the package that shipped the pretrained weights.

Each kind also names the distributions its build imports, for the model's pinned
requirements (the loader itself needs BASE_PACKAGES).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from orca.registry import Registry

# What the loader imports whatever the body: orca.model, orca.checkpoint, the predictions.
BASE_PACKAGES = ("torch", "numpy", "safetensors")


@dataclass(frozen=True)
class BodyPacking:
    """`save(body, backbone, directory)` writes what the build needs into `directory` and
    returns a JSON-able description; `build(description, directory)` returns the body
    with the same architecture (random weights); `packages` are the distributions the
    build imports."""

    save: Callable[[nn.Module, str, Path], dict[str, Any]]
    build: Callable[[dict[str, Any], Path], nn.Module]
    packages: tuple[str, ...]


BODY_PACKINGS: Registry[BodyPacking] = Registry("packaged body kind")


def _save_text(body: nn.Module, backbone: str, directory: Path) -> dict[str, Any]:
    body.model.config.save_pretrained(directory)  # config.json
    return {}


def _build_text(description: dict[str, Any], directory: Path) -> nn.Module:
    from transformers import AutoConfig, AutoModel
    from transformers.utils import logging as hf_logging

    from orca.model.text_body import TextBody

    hf_logging.set_verbosity_error()
    config = AutoConfig.from_pretrained(directory)
    return TextBody(AutoModel.from_config(config), str(directory))


def _save_vision(body: nn.Module, backbone: str, directory: Path) -> dict[str, Any]:
    from orca.model.bodies import parse_backbone

    spec = parse_backbone(backbone).spec  # a vision body is always a registered one
    return {"architecture": spec.locate(), "options": _plain(dict(spec.options))}


def _build_vision(description: dict[str, Any], directory: Path) -> nn.Module:
    import timm

    from orca.model.vision_body import VISION_FAMILIES

    options = {key: _tuples(value) for key, value in description["options"].items()}
    arch = description["architecture"]
    model = timm.create_model(arch, pretrained=False, num_classes=0, **options)
    return VISION_FAMILIES.get(type(model).__name__)(model, arch)


def _plain(value: Any) -> Any:
    """Tuples as lists, recursively, so the options survive JSON."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, tuple | list):
        return [_plain(item) for item in value]
    return value


def _tuples(value: Any) -> Any:
    """Lists back as tuples (timm's options such as depths are tuples)."""
    if isinstance(value, list):
        return tuple(_tuples(item) for item in value)
    return value


BODY_PACKINGS.register("text", BodyPacking(_save_text, _build_text, ("transformers",)))
BODY_PACKINGS.register("vision", BodyPacking(_save_vision, _build_vision, ("timm",)))


def required_packages(body_kind: str) -> tuple[str, ...]:
    """The distributions a package with a `body_kind` body needs to load."""
    return (*BASE_PACKAGES, *BODY_PACKINGS.get(body_kind).packages)
