"""Optimal Transport Dataset Distance (OTDD) for stage 2 of ORCA, in pure torch.

`OTDD` holds the fixed proxy (source) dataset and scores target datasets; all values are
squared distances. `label_distances` and the Sinkhorn solver are usable on their own.
The label distances (inner kinds) and the outer solvers are chosen by name from the
registries INNER_KINDS and OUTER_KINDS, and the outer cost's convention (plain or halved
squared distance) from COST_CONVENTIONS; importing this package registers every kind.
"""

from orca.otdd import bures  # noqa: F401  (registers the "gaussian" inner kind)
from orca.otdd.costs import COST_CONVENTIONS
from orca.otdd.distance import OTDD, OTDDConfig, otdd
from orca.otdd.inner import INNER_KINDS
from orca.otdd.label_distances import LabelDistances, class_groups, label_distances
from orca.otdd.outer import OUTER_KINDS
from orca.otdd.sinkhorn import (
    SinkhornPotentials,
    sinkhorn_cost,
    sinkhorn_divergence,
    sinkhorn_plan,
    sinkhorn_potentials,
    squared_distances,
)

__all__ = [
    "COST_CONVENTIONS",
    "INNER_KINDS",
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
