"""Two shortcuts that change the work and not the answer: the self terms skip the label
distances of class pairs too far apart to reach the kernel, and the exact mode starts POT's
network simplex from entropic potentials."""

from __future__ import annotations

import numpy as np
import ot
import pytest
import torch

import orca.otdd.distance as distance_module
import orca.otdd.exact as exact_module
import orca.otdd.inner as inner_module
from orca.otdd import OTDD, OTDDConfig, otdd
from orca.otdd.inner import upper_pairs


def clusters(n: int, d: int, classes: int, seed: int, spread: float):
    """Gaussian classes, unit noise, class means N(0, spread^2 I)."""
    rng = np.random.default_rng(seed)
    means = rng.normal(scale=spread, size=(classes, d))
    labels = np.repeat(np.arange(classes), n // classes)
    points = means[labels] + rng.normal(size=(len(labels), d))
    return torch.from_numpy(points.astype(np.float32)), torch.from_numpy(labels)


def count_within_problems(monkeypatch) -> list[int]:
    """Records how many pair problems each SinkhornInner.within call was asked to solve."""
    sizes: list[int] = []
    real = inner_module.SinkhornInner.within

    def within(self, side, state, own, pairs=None):
        sizes.append(len(upper_pairs(side.count) if pairs is None else pairs))
        return real(self, side, state, own, pairs)

    monkeypatch.setattr(inner_module.SinkhornInner, "within", within)
    return sizes


def every_pair(distances, side, reach):
    return upper_pairs(side.count)


SINKHORN = OTDDConfig(inner="sinkhorn", outer="sinkhorn", max_samples=None)


def test_far_apart_classes_skip_their_self_label_distances_and_keep_the_value(monkeypatch):
    xs, ys = clusters(400, 64, 4, seed=0, spread=1.4)  # squared distances in the hundreds
    xt, yt = clusters(400, 64, 4, seed=1, spread=1.4)
    sizes = count_within_problems(monkeypatch)
    fast = OTDD(xs, ys, SINKHORN)
    value = float(fast(xt, yt))
    assert sizes == [0, 0]  # source and target: no within-side pair problem solved
    off_diagonal = ~torch.eye(4, dtype=torch.bool)
    assert torch.isnan(fast.source_label_distances[off_diagonal]).all()
    sizes.clear()
    monkeypatch.setattr(distance_module, "pairs_within_reach", every_pair)
    full = OTDD(xs, ys, SINKHORN)
    assert sizes == [6]
    reference = float(full(xt, yt))
    assert sizes == [6, 6]
    assert not torch.isnan(full.source_label_distances).any()
    assert value == pytest.approx(reference, rel=1e-6)


def test_close_classes_compute_every_self_label_distance(monkeypatch):
    xs, ys = clusters(300, 8, 3, seed=2, spread=0.05)  # distances ~ 16: within reach
    xt, yt = clusters(300, 8, 3, seed=3, spread=0.05)
    sizes = count_within_problems(monkeypatch)
    fast = OTDD(xs, ys, SINKHORN)
    fast(xt, yt)
    assert sizes == [3, 3]
    assert not torch.isnan(fast.source_label_distances).any()


def test_near_and_far_pairs_in_one_side(monkeypatch):
    """Classes 0 and 1 overlap, class 2 is far from both: only the pair (0, 1) is solved,
    and the value matches the computation with every pair."""
    rng = np.random.default_rng(4)
    means = np.zeros((3, 16))
    means[1, 0] = 0.5
    means[2, 0] = 60.0  # squared distance ~3600 from the others
    labels = np.repeat(np.arange(3), 100)
    points = torch.from_numpy((means[labels] + 0.3 * rng.normal(size=(300, 16))).astype("f4"))
    labels = torch.from_numpy(labels)
    sizes = count_within_problems(monkeypatch)
    fast = OTDD(points, labels, SINKHORN)
    assert sizes == [1]
    target = points.flip(0) + 0.1
    value = float(fast(target, labels.flip(0)))
    monkeypatch.setattr(distance_module, "pairs_within_reach", every_pair)
    assert value == pytest.approx(float(otdd(points, labels, target, labels.flip(0), SINKHORN)))


def test_exact_mode_warm_starts_the_network_simplex_and_keeps_the_value(monkeypatch):
    if not exact_module.warm_start_supported():
        pytest.skip("the installed POT's ot.emd takes no potentials_init")
    xs, ys = clusters(300, 16, 3, seed=5, spread=1.4)
    xt, yt = clusters(240, 16, 3, seed=6, spread=1.4)
    starts = []
    real_emd = ot.emd

    def emd(a, b, cost, **options):
        starts.append(options.get("potentials_init") is not None)
        return real_emd(a, b, cost, **options)

    monkeypatch.setattr(ot, "emd", emd)
    config = OTDDConfig(inner="exact", outer="exact", max_samples=None)
    warm = float(otdd(xs, ys, xt, yt, config))
    assert starts == [True] * 10  # 3 x 3 class pairs and the outer problem
    starts.clear()
    monkeypatch.setattr(exact_module, "warm_start_supported", lambda: False)
    cold = float(otdd(xs, ys, xt, yt, config))
    assert starts == [False] * 10
    assert warm == pytest.approx(cold, rel=1e-12)
    cost = torch.cdist(xs.double(), xt.double()) ** 2  # the outer value alone, against POT
    plan = exact_module.emd_plan(cost.numpy(), None, 10**7)
    assert float((plan * cost.numpy()).sum()) == pytest.approx(
        ot.emd2(np.full(300, 1 / 300), np.full(240, 1 / 240), cost.numpy())
    )
