"""The pipeline's stages by name: the one place they are listed.

- `STAGES`: every stage, in pipeline order.
- `FAMILY_STAGES`: the stages each method family (orca.methods) runs, in order: an "orca"
  method runs ingest -> proxy -> align -> refine -> evaluate, a "classical" one
  ingest -> classical.
- `STAGE_INPUTS`: the earlier stages whose results each stage takes as inputs.
"""

from __future__ import annotations

STAGES = ("ingest", "proxy", "align", "refine", "evaluate", "classical")

FAMILY_STAGES: dict[str, tuple[str, ...]] = {
    "orca": ("ingest", "proxy", "align", "refine", "evaluate"),
    "classical": ("ingest", "classical"),
}

STAGE_INPUTS: dict[str, tuple[str, ...]] = {
    "ingest": (),
    "proxy": (),
    "align": ("ingest", "proxy"),
    "refine": ("ingest", "align"),
    "evaluate": ("ingest", "refine"),
    "classical": ("ingest",),
}


def check_stage(stage: str, field: str = "stage") -> str:
    """`stage`, or ValueError naming `field` and the valid stages."""
    if stage not in STAGES:
        raise ValueError(f"{field}: unknown stage {stage!r}; valid stages: {', '.join(STAGES)}")
    return stage


def stages_through(stage: str) -> tuple[str, ...]:
    """`stage` and every stage it needs, directly or not, in pipeline order."""
    needed, pending = set(), [check_stage(stage)]
    while pending:
        name = pending.pop()
        if name not in needed:
            needed.add(name)
            pending.extend(STAGE_INPUTS[name])
    return tuple(name for name in STAGES if name in needed)
