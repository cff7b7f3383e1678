"""What a preset is, and the registry of presets (PRESETS).

A preset gives, for a task, config values to set (section -> field -> value, sections
"proxy", "align", "refine") and the body to use. It is applied between the task's
registered defaults and the user's own overrides, which win (`apply_preset`). This module
imports no torch and no config class: a preset's values are plain data, validated when a
config is built from them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from orca.registry import Registry

SECTIONS = ("proxy", "align", "refine")
Sections = dict[str, dict[str, Any]]


@dataclass(frozen=True)
class Preset:
    """A named setting. `values(task)`: the fields it sets for `task` (a task name), by
    section; `backbone(task)`: the body it uses for `task`, or None (the task's own)."""

    name: str
    description: str
    values: Callable[[str], Sections]
    backbone: Callable[[str], str | None]


PRESETS: Registry[Preset] = Registry("preset")
DEFAULT_PRESET = "orca"

PRESETS.register(
    DEFAULT_PRESET,
    Preset(
        DEFAULT_PRESET,
        "orca's own defaults: each task's registered hyperparameters, nothing changed",
        values=lambda task: {},
        backbone=lambda task: None,
    ),
)


def merged(*layers: Mapping[str, Mapping[str, Any]]) -> Sections:
    """Section-wise merge of {section: {field: value}} layers; a later layer wins per field."""
    out: Sections = {}
    for layer in layers:
        for section, fields in layer.items():
            out.setdefault(section, {}).update(fields)
    return out


def apply_preset(
    name: str, task: str, defaults: Mapping[str, Mapping[str, Any]], overrides: Mapping
) -> Sections:
    """The sections of a run of `task`: its registered `defaults`, then preset `name`'s
    values, then the user's `overrides` (which win). An unknown name raises
    UnknownNameError (a ValueError) listing the presets."""
    preset = PRESETS.get(name)
    return merged(defaults, preset.values(task), overrides)


def preset_backbone(name: str, task: str) -> str | None:
    """The body preset `name` uses for `task` (None: the task's default)."""
    return PRESETS.get(name).backbone(task)
