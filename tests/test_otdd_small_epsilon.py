"""OTDD at a small epsilon (0.1 against squared distances in the hundreds, microsoft/otdd's
default setting): the default tolerance is within 1% of the exact value, the annealed
solver never needs its log-domain rescue, and its kernel holds no subnormal numbers.
Agreement with POT at tight tolerances is in tests/test_otdd.py."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import orca.otdd.solver as solver
from orca.otdd import OTDDConfig, otdd, squared_distances


def clusters(n: int, d: int, classes: int, seed: int, shift: float = 0.0):
    """Gaussian clusters whose squared distances are in the hundreds at d = 64."""
    rng = np.random.default_rng(seed)
    means = rng.normal(scale=1.4, size=(classes, d)) + shift
    labels = np.repeat(np.arange(classes), n // classes)
    points = means[labels] + rng.normal(size=(len(labels), d))
    return torch.from_numpy(points.astype(np.float32)), torch.from_numpy(labels)


@pytest.mark.parametrize("seed", [0, 1])
def test_default_tolerance_is_within_one_percent_of_exact(seed):
    xs, ys = clusters(400, 64, 4, seed)
    xt, yt = clusters(400, 64, 4, seed + 10, shift=0.3)
    assert float(squared_distances(xs, xt).median()) > 100  # the regime of the issue
    exact = otdd(xs, ys, xt, yt, OTDDConfig(inner="exact", outer="exact", max_samples=None))
    fast = otdd(xs, ys, xt, yt, OTDDConfig(inner="sinkhorn", outer="sinkhorn", max_samples=None))
    assert OTDDConfig().sinkhorn_tol == 0.1 and OTDDConfig().epsilon == 0.1
    assert abs(float(fast) - float(exact)) < 0.01 * float(exact)


def test_small_epsilon_needs_no_rescue_and_no_subnormal_kernel(monkeypatch):
    rescues = []
    original = solver._Kernel.rescue
    monkeypatch.setattr(solver._Kernel, "rescue", lambda self: rescues.append(1) or original(self))
    smallest = []
    original_build = solver._Kernel.build

    def build(self, *args, **kwargs):
        original_build(self, *args, **kwargs)
        smallest.append(float(self.kernel.min()))

    monkeypatch.setattr(solver._Kernel, "build", build)
    xs, _ = clusters(300, 64, 3, seed=3)
    xt, _ = clusters(300, 64, 3, seed=4, shift=0.5)
    cost = squared_distances(xs, xt).unsqueeze(0)  # (1, 300, 300), in the hundreds
    log_w = torch.full((1, 300), -math.log(300))
    solution = solver.solve_batched(cost, log_w, log_w.clone(), 0.1, 5000, 1e-3, False)
    assert float(solution.errors.max()) < 1e-3
    assert rescues == []
    assert min(smallest) >= torch.finfo(torch.float32).tiny  # no zero or subnormal entry
