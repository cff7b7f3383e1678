"""microsoft/otdd's default OTDD, redone on its engine (geomloss), for timing in the same run.

microsoft/otdd is not on PyPI, but the library it solves with is: `geomloss`. Its default
`DatasetDistance(inner_ot_method="exact", debiased_loss=True, p=2, entreg=0.1)` computes:

1. label distances: for every pair of classes of the union of both label sets (source x
   source, target x target, source x target), geomloss's debiased Sinkhorn divergence
   between the two classes' points, p = 2 (cost ||x - y||^2 / 2), blur = entreg^(1/p);
2. the outer problem: geomloss's debiased Sinkhorn divergence between the two datasets
   with the augmented cost ||x - y||^2 / 2 + W[label_x, label_y], labels carried as an
   extra coordinate, tensorized backend (n x m cost in memory).

Written here from that description (no code of microsoft/otdd's). Units: geomloss's cost
is half the squared distance, so its epsilon of 0.1 is orca's 0.2; twice its value is
comparable with orca's and POT's squared-distance OTDD. `pip install geomloss` (the
benchmark says so when it is missing).
"""

from __future__ import annotations

import numpy as np
import torch

EPSILON = 0.1  # entreg, in geomloss's units (cost ||x - y||^2 / 2)


def _divergence(**options):
    from geomloss import SamplesLoss

    return SamplesLoss("sinkhorn", p=2, blur=EPSILON**0.5, debias=True, **options)


def label_distances(groups: list[torch.Tensor]) -> torch.Tensor:
    """W (C, C) over the classes in `groups`: the debiased divergence of each pair."""
    divergence = _divergence(backend="tensorized")
    size = len(groups)
    distances = torch.zeros(size, size, dtype=groups[0].dtype)
    for i in range(size):
        for j in range(i + 1, size):
            distances[i, j] = distances[j, i] = divergence(groups[i], groups[j])
    return distances


def geomloss_otdd(xs: np.ndarray, ys: np.ndarray, xt: np.ndarray, yt: np.ndarray) -> float:
    """The OTDD in geomloss's units (half squared distances); labels are integers."""
    xs_t, xt_t = torch.from_numpy(xs).float(), torch.from_numpy(xt).float()
    source_classes, target_classes = np.unique(ys), np.unique(yt)
    groups = [xs_t[torch.from_numpy(ys == c)] for c in source_classes]
    groups += [xt_t[torch.from_numpy(yt == c)] for c in target_classes]
    label_cost = label_distances(groups)  # (C_s + C_t, C_s + C_t)
    index_s = torch.from_numpy(np.searchsorted(source_classes, ys)).float()
    index_t = torch.from_numpy(np.searchsorted(target_classes, yt) + len(source_classes)).float()
    zs = torch.cat([xs_t, index_s[:, None]], dim=1)
    zt = torch.cat([xt_t, index_t[:, None]], dim=1)

    def augmented_cost(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """(B, N, M) cost between batches of labelled points (label last)."""
        xa, xb = a[..., :-1], b[..., :-1]
        la, lb = a[..., -1].long(), b[..., -1].long()
        features = (
            (xa * xa).sum(-1, keepdim=True)
            + (xb * xb).sum(-1).unsqueeze(-2)
            - 2 * xa @ xb.transpose(-1, -2)
        ) / 2
        return features + label_cost[la.unsqueeze(-1), lb.unsqueeze(-2)]

    divergence = _divergence(cost=augmented_cost, backend="tensorized")
    return float(divergence(zs, zt))
