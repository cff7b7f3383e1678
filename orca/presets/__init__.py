"""Presets: named settings applied over a task's registered hyperparameters.

    orca   orca's own defaults (changes nothing)
    paper  the authors' settings for every paper task orca knows (orca/presets/paper.py;
           docs/paper-preset.md lists every difference from orca's defaults)

`orca run --preset NAME`, `orca bench --preset NAME`, or `preset` in a flow's config:
PipelineConfig applies the preset between the task's registered defaults and the user's
own overrides (`--set`, or the sections given in the config), which win. Importing this
package registers every preset; it imports no torch.
"""

from orca.presets import paper  # noqa: F401  (registers "paper")
from orca.presets.base import (
    DEFAULT_PRESET,
    PRESETS,
    Preset,
    apply_preset,
    merged,
    preset_backbone,
)

__all__ = ["DEFAULT_PRESET", "PRESETS", "Preset", "apply_preset", "merged", "preset_backbone"]
