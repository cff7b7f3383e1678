"""Optimal Transport Dataset Distance (OTDD) for stage 2 of ORCA, in pure torch.

`OTDD` holds the fixed proxy (source) dataset and scores target datasets; all values are
squared distances. `label_distances` and the Sinkhorn solver are usable on their own.
"""

from orca.otdd.distance import INNER_KINDS, OTDD, OUTER_KINDS, OTDDConfig, otdd
from orca.otdd.label_distances import (
    LABEL_DISTANCES,
    LabelDistances,
    class_groups,
    label_distances,
)
from orca.otdd.sinkhorn import (
    SinkhornPotentials,
    sinkhorn_cost,
    sinkhorn_divergence,
    sinkhorn_plan,
    sinkhorn_potentials,
    squared_distances,
)

__all__ = [
    "INNER_KINDS",
    "LABEL_DISTANCES",
    "OTDD",
    "OUTER_KINDS",
    "LabelDistances",
    "OTDDConfig",
    "SinkhornPotentials",
    "class_groups",
    "label_distances",
    "otdd",
    "sinkhorn_cost",
    "sinkhorn_divergence",
    "sinkhorn_plan",
    "sinkhorn_potentials",
    "squared_distances",
]
