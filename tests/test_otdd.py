"""OTDD against independent references: POT (exact OT, Sinkhorn, Bures), gradcheck, invariants."""

from __future__ import annotations

import numpy as np
import ot
import pytest
import torch

from orca.otdd import (
    INNER_KINDS,
    OTDD,
    OUTER_KINDS,
    OTDDConfig,
    label_distances,
    otdd,
    sinkhorn_cost,
    sinkhorn_divergence,
    sinkhorn_plan,
    sinkhorn_potentials,
    squared_distances,
)
from orca.otdd.bures import GaussianInner
from orca.otdd.distance import class_quotas, subsample
from orca.otdd.outer import OuterKind

KINDS = ("exact", "sinkhorn", "gaussian")
# Tight solver settings so that Sinkhorn values are converged to well below the test tolerances.
TIGHT = {"sinkhorn_max_iter": 20000, "sinkhorn_tol": 1e-10}
# OTDD(D, D) puts a near-permutation plan in the cross term, where alternating Sinkhorn
# converges slowly (the self terms use the fast symmetric solver); this reaches ~1e-5 relative.
MODERATE = {"sinkhorn_max_iter": 5000, "sinkhorn_tol": 1e-8}


def labelled(n, d, classes, seed, shift=0.0, scale=0.5, dtype=torch.float64):
    """Clustered labelled data: class c is centred at c * e_0 (+ shift), spread `scale`."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes  # every class present
    labels = labels[torch.randperm(n, generator=gen)]
    centres = torch.zeros(classes, d, dtype=dtype)
    centres[:, 0] = torch.arange(classes, dtype=dtype)
    noise = scale * torch.randn(n, d, generator=gen, dtype=dtype)
    return centres[labels] + shift + noise, labels


def uniform(k):
    return np.full(k, 1.0 / k)


def reference_augmented_cost(xs, ys, xt, yt):
    """M built with POT only: ot.dist feature term + ot.emd2 W_2^2 between class samples."""
    xs, xt, ys, yt = xs.numpy(), xt.numpy(), ys.numpy(), yt.numpy()
    cs, ct = np.unique(ys), np.unique(yt)
    w = np.zeros((len(cs), len(ct)))
    for i, ci in enumerate(cs):
        for j, cj in enumerate(ct):
            a, b = xs[ys == ci], xt[yt == cj]
            w[i, j] = ot.emd2(uniform(len(a)), uniform(len(b)), ot.dist(a, b))
    index_s = np.searchsorted(cs, ys)
    index_t = np.searchsorted(ct, yt)
    return ot.dist(xs, xt) + w[index_s][:, index_t]


# 1. Exact outer + exact inner equals POT's emd2 on an independently built augmented cost.
def test_exact_otdd_matches_pot_emd2():
    xs, ys = labelled(30, 4, 3, seed=1)
    xt, yt = labelled(25, 4, 2, seed=2, shift=0.7)
    config = OTDDConfig(inner="exact", outer="exact")
    cost_ref = reference_augmented_cost(xs, ys, xt, yt)
    expected = ot.emd2(uniform(30), uniform(25), cost_ref)
    distance = OTDD(xs, ys, config)
    np.testing.assert_allclose(distance.augmented_cost(xt, yt).numpy(), cost_ref, rtol=1e-10)
    value = distance(xt, yt)
    assert value.shape == ()
    assert value.item() == pytest.approx(expected, rel=1e-5)
    assert otdd(xs, ys, xt, yt, config).item() == pytest.approx(expected, rel=1e-5)


# 2. OTDD(D, D) is zero with the debiased outer problem, for every inner kind.
@pytest.mark.parametrize("inner", KINDS)
def test_otdd_of_a_dataset_with_itself_is_zero(inner):
    xs, ys = labelled(30, 3, 3, seed=3)
    xt, yt = labelled(24, 3, 2, seed=4, shift=0.5)
    config = OTDDConfig(inner=inner, outer="sinkhorn", **MODERATE)
    distance = OTDD(xs, ys, config)
    different = distance(xt, yt).item()
    same = distance(xs.clone(), ys.clone()).item()
    assert different > 0.1
    assert abs(same) < 1e-4 * different


# 3. Symmetry: OTDD(A, B) = OTDD(B, A).
@pytest.mark.parametrize("inner", KINDS)
def test_otdd_is_symmetric(inner):
    xa, ya = labelled(24, 3, 3, seed=5)
    xb, yb = labelled(20, 3, 2, seed=6, shift=0.4)
    config = OTDDConfig(inner=inner, outer="sinkhorn", **TIGHT)
    forward = otdd(xa, ya, xb, yb, config).item()
    backward = otdd(xb, yb, xa, ya, config).item()
    assert forward > 0.1
    assert forward == pytest.approx(backward, rel=1e-4)


# 4. Gaussian inner distances equal POT's Bures-Wasserstein (POT returns W; we return W^2).
def test_gaussian_label_distances_match_pot_bures_wasserstein():
    xa, ya = labelled(40, 3, 4, seed=7, scale=0.8)
    xb, yb = labelled(31, 3, 3, seed=8, shift=0.3, scale=1.3)
    ya[0] = 9  # a one-sample class: only the ridge keeps its covariance non-singular
    ridge = 1e-6
    result = label_distances(xa, ya, xb, yb, "gaussian", ridge=ridge)
    assert result.classes_a.tolist() == [0, 1, 2, 3, 9]
    assert result.classes_b.tolist() == [0, 1, 2]
    expected = np.zeros((5, 3))
    for i, ci in enumerate(result.classes_a.tolist()):
        for j, cj in enumerate(result.classes_b.tolist()):
            a, b = xa[ya == ci].numpy(), xb[yb == cj].numpy()
            w = ot.gaussian.empirical_bures_wasserstein_distance(a, b, reg=ridge)
            expected[i, j] = float(np.squeeze(w)) ** 2
    np.testing.assert_allclose(result.distances.numpy(), expected, rtol=1e-6)

    same = label_distances(xa, ya, xa, ya, "gaussian", ridge=ridge).distances
    groups = [xa[ya == c].numpy() for c in result.classes_a.tolist()]
    ms = np.stack([g.mean(0) for g in groups])  # (C, d)
    covs = np.stack([np.cov(g.T, bias=True).reshape(3, 3) + ridge * np.eye(3) for g in groups])
    expected_same = ot.gaussian.bures_wasserstein_distance(ms, ms, covs, covs) ** 2
    np.testing.assert_allclose(same.numpy(), expected_same, rtol=1e-6, atol=1e-9)
    assert torch.all(torch.diagonal(same) == 0)


def pot_entropic_value(x, y, epsilon):
    """OT_eps = <P, M> + eps KL(P | a x b) with P from POT's log-domain Sinkhorn."""
    a, b, cost = uniform(len(x)), uniform(len(y)), ot.dist(x, y)
    plan = ot.sinkhorn(a, b, cost, epsilon, method="sinkhorn_log", numItermax=200000, stopThr=1e-12)
    positive = plan > 0
    kl = np.sum(plan[positive] * np.log(plan[positive] / np.outer(a, b)[positive]))
    return float(np.sum(plan * cost) + epsilon * kl)


# 5. Sinkhorn inner distances equal a debiased divergence built from POT's Sinkhorn plans.
def test_sinkhorn_label_distances_match_pot():
    xa, ya = labelled(24, 2, 2, seed=9)
    xb, yb = labelled(18, 2, 2, seed=10, shift=0.4)
    eps = 0.1
    result = label_distances(xa, ya, xb, yb, "sinkhorn", epsilon=eps, max_iter=50000, tol=1e-10)
    expected = np.zeros((2, 2))
    for i in range(2):
        for j in range(2):
            a, b = xa[ya == i].numpy(), xb[yb == j].numpy()
            expected[i, j] = (
                pot_entropic_value(a, b, eps)
                - 0.5 * pot_entropic_value(a, a, eps)
                - 0.5 * pot_entropic_value(b, b, eps)
            )
    np.testing.assert_allclose(result.distances.numpy(), expected, rtol=1e-4)
    a, b = xa[ya == 0], xb[yb == 1]
    divergence = sinkhorn_divergence(
        squared_distances(a, b),
        squared_distances(a, a),
        squared_distances(b, b),
        epsilon=eps,
        max_iter=50000,
        tol=1e-10,
    )
    assert divergence.item() == pytest.approx(expected[0, 1], rel=1e-4)

    # Like with like: POT's divergence uses <P, M> only; our plans give the same number.

    def transport_only(x, y, symmetric=False):
        cost = squared_distances(x, y)
        potentials = sinkhorn_potentials(
            cost, epsilon=eps, max_iter=50000, tol=1e-10, symmetric=symmetric
        )
        return float((sinkhorn_plan(cost, potentials, epsilon=eps) * cost).sum())

    ours = (
        transport_only(a, b) - 0.5 * transport_only(a, a, True) - 0.5 * transport_only(b, b, True)
    )
    pot = ot.bregman.empirical_sinkhorn_divergence(
        a.numpy(), b.numpy(), eps, numIterMax=100000, stopThr=1e-12
    )
    assert ours == pytest.approx(float(pot), rel=1e-4)


def frozen_label_distances(monkeypatch):
    """Hold the target's label distances W_tt and W_st at their first values (they carry no
    gradient by design), so that finite differences see the function autograd differentiates."""
    for name in ("_label_distances_within", "_label_distances_between"):
        real = getattr(OTDD, name)
        first = []

        def frozen(self, *args, real=real, first=first):
            if not first:
                first.append(real(self, *args))
            return first[0]

        monkeypatch.setattr(OTDD, name, frozen)


# 6. Gradient w.r.t. target features (feature term only) passes gradcheck.
@pytest.mark.parametrize("outer", ["sinkhorn", "exact"])
def test_otdd_gradcheck(outer, monkeypatch):
    xs, ys = labelled(6, 2, 2, seed=11)
    xt, yt = labelled(5, 2, 2, seed=12, shift=0.3)
    frozen_label_distances(monkeypatch)
    config = OTDDConfig(inner="exact", outer=outer, sinkhorn_max_iter=100000, sinkhorn_tol=1e-13)
    distance = OTDD(xs, ys, config)
    target = xt.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: distance(x, yt), (target,), eps=1e-6, atol=1e-6)


# 7. The source x source label distances are computed once, however often OTDD is called.
def test_source_label_distances_computed_once(monkeypatch):
    xs, ys = labelled(20, 2, 3, seed=13)
    xt, yt = labelled(12, 2, 2, seed=14)
    calls = []
    for name in ("prepare", "within"):
        real = getattr(GaussianInner, name)

        def counting(self, side, *args, real=real, name=name):
            calls.append((name, len(side)))
            return real(self, side, *args)

        monkeypatch.setattr(GaussianInner, name, counting)
    distance = OTDD(xs, ys, OTDDConfig(inner="gaussian"))
    cached = distance.source_label_distances.clone()
    first = distance(xt, yt)
    second = distance(xt * 1.1, yt)
    assert calls.count(("prepare", 20)) == 1 and calls.count(("within", 20)) == 1
    assert calls.count(("prepare", 12)) == 2 and calls.count(("within", 12)) == 2
    assert torch.equal(distance.source_label_distances, cached)
    assert first.item() != second.item()


# 8. Config validation and the dict round-trip.
@pytest.mark.parametrize(
    ("changes", "words"),
    [
        (
            {"inner": "wasserstein"},
            [
                "inner: unknown inner kind 'wasserstein'",
                "valid inner kinds: exact, gaussian, sinkhorn",
            ],
        ),
        (
            {"outer": "gaussian"},
            ["outer: unknown outer kind 'gaussian'; valid outer kinds: exact, sinkhorn"],
        ),
        ({"epsilon": 0.0}, ["epsilon", "> 0"]),
        ({"epsilon": -1.0}, ["epsilon", "> 0"]),
        ({"chunk_size": 0}, ["chunk_size", ">= 1"]),
        ({"max_samples": 2.5}, ["max_samples", "integer"]),
    ],
)
def test_config_rejects_bad_fields(changes, words):
    with pytest.raises(ValueError) as info:
        OTDDConfig(**changes)
    for word in words:
        assert word in str(info.value)


def test_config_round_trip_and_unknown_keys():
    config = OTDDConfig(inner="gaussian", epsilon=0.05, max_samples=None, seed=3)
    assert OTDDConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="blur") as info:
        OTDDConfig.from_dict({"inner": "exact", "blur": 0.3})
    assert "epsilon" in str(info.value)  # the valid fields are listed


def test_unknown_label_distance_kind_and_option():
    x, y = labelled(8, 2, 2, seed=15)
    with pytest.raises(ValueError, match="exact, gaussian, sinkhorn"):
        label_distances(x, y, x, y, "bures")
    with pytest.raises(ValueError, match="ridge"):
        label_distances(x, y, x, y, "gaussian", epsilon=0.1)
    assert set(INNER_KINDS) == set(KINDS)


def test_the_outer_registry_chooses_the_solver():
    """OTDDConfig.outer picks the OUTER_KINDS entry that solves the outer problems: a
    debiased solver's self terms are subtracted, a plain one's value is taken as is."""
    xs, ys = labelled(12, 2, 2, seed=18)
    xt, yt = labelled(9, 2, 2, seed=19, shift=0.3)
    calls = []

    def solve(value_cross, value_self):
        def fake(cost, epsilon, max_iter, tol, symmetric=False, points=None):
            calls.append((tuple(cost.shape), symmetric))
            value = value_self if symmetric else value_cross
            return torch.tensor(value, dtype=torch.float64), None

        return fake

    OUTER_KINDS.register("plain-test", OuterKind(solve=solve(5.0, 1.0), debiased=False))
    OUTER_KINDS.register("debiased-test", OuterKind(solve=solve(5.0, 1.0), debiased=True))
    try:
        plain = otdd(xs, ys, xt, yt, OTDDConfig(outer="plain-test", max_samples=None))
        assert plain.item() == 5.0 and calls == [((12, 9), False)]
        calls.clear()
        config = OTDDConfig(outer="debiased-test", max_samples=None)
        assert otdd(xs, ys, xt, yt, config).item() == 5.0 - 0.5 - 0.5
        assert sorted(calls) == [((9, 9), True), ((12, 9), False), ((12, 12), True)]
    finally:
        OUTER_KINDS.unregister("plain-test")
        OUTER_KINDS.unregister("debiased-test")
    with pytest.raises(ValueError, match="outer: unknown outer kind 'plain-test'"):
        OTDDConfig(outer="plain-test")
    exact = otdd(xs, ys, xt, yt, OTDDConfig(inner="exact", outer="exact", max_samples=None))
    reference = ot.emd2(uniform(12), uniform(9), reference_augmented_cost(xs, ys, xt, yt))
    assert exact.item() == pytest.approx(reference, rel=1e-9)


# 9. Building the cost in blocks of 7 rows gives the same OTDD as one block.
def test_chunked_cost_matches_unchunked():
    xs, ys = labelled(30, 3, 3, seed=16)
    xt, yt = labelled(17, 3, 2, seed=17, shift=0.2)
    small = OTDD(xs, ys, OTDDConfig(inner="gaussian", chunk_size=7))
    large = OTDD(xs, ys, OTDDConfig(inner="gaussian", chunk_size=4096))
    torch.testing.assert_close(small.augmented_cost(xt, yt), large.augmented_cost(xt, yt))
    assert small(xt, yt).item() == pytest.approx(large(xt, yt).item(), rel=1e-9)


# 10. The solver itself: at small epsilon the entropic value approaches exact OT.
def test_sinkhorn_approaches_exact_ot_at_small_epsilon():
    gen = torch.Generator().manual_seed(18)
    cost = torch.rand(20, 15, generator=gen, dtype=torch.float64)
    cost = cost / cost.max()
    exact = ot.emd2(uniform(20), uniform(15), cost.numpy())
    potentials = sinkhorn_potentials(cost, epsilon=1e-3, max_iter=50000, tol=1e-9)
    assert potentials.marginal_error < 1e-9
    plan = sinkhorn_plan(cost, potentials, epsilon=1e-3)
    np.testing.assert_allclose(plan.sum(0).numpy(), uniform(15), atol=1e-12)
    np.testing.assert_allclose(plan.sum(1).numpy(), uniform(20), atol=1e-8)
    value = sinkhorn_cost(cost, epsilon=1e-3, max_iter=50000, tol=1e-9).item()
    transport = float((plan * cost).sum())
    assert exact - 1e-9 <= transport <= exact + 5e-3
    # OT_0 <= OT_eps <= OT_0 + eps * log(min(n, m)) for the KL-regularised value
    assert exact - 1e-9 <= value <= exact + 1e-3 * np.log(15) + 1e-9


def test_sinkhorn_gradient_is_the_plan():
    gen = torch.Generator().manual_seed(19)
    cost = torch.rand(7, 5, generator=gen, dtype=torch.float64).requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda c: sinkhorn_cost(c, epsilon=0.1, max_iter=100000, tol=1e-13), (cost,)
    )


def test_float32_close_to_float64_and_subsampling_cap():
    xs, ys = labelled(40, 3, 3, seed=20)
    xt, yt = labelled(30, 3, 2, seed=21, shift=0.5)
    config = OTDDConfig(inner="sinkhorn", max_samples=25, max_samples_per_class=6)
    value64 = otdd(xs, ys, xt, yt, config)
    value32 = otdd(xs.float(), ys, xt.float(), yt, config)
    assert value32.dtype == torch.float32
    assert torch.isfinite(value32)
    assert value32.item() == pytest.approx(value64.item(), rel=1e-3)


def test_malformed_inputs_raise():
    xs, ys = labelled(10, 3, 2, seed=22)
    with pytest.raises(ValueError, match="source_labels"):
        OTDD(xs, ys.float())
    distance = OTDD(xs, ys, OTDDConfig(inner="gaussian"))
    with pytest.raises(ValueError, match="dim"):
        distance(torch.randn(5, 4, dtype=torch.float64), torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="labels"):
        distance(torch.randn(5, 3, dtype=torch.float64), torch.zeros(4, dtype=torch.long))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    xs, ys = labelled(30, 3, 3, seed=23)
    xt, yt = labelled(20, 3, 2, seed=24, shift=0.5)
    for inner in KINDS:
        config = OTDDConfig(inner=inner, **TIGHT)
        cpu = otdd(xs, ys, xt, yt, config)
        target = xt.cuda().requires_grad_(True)
        gpu = otdd(xs.cuda(), ys.cuda(), target, yt.cuda(), config)
        gpu.backward()
        assert gpu.device.type == "cuda" and target.grad is not None
        assert gpu.item() == pytest.approx(cpu.item(), rel=1e-6)


def test_class_quotas_follow_the_class_shares():
    # shares 0.5 / 0.3 / 0.2 of 10 points, cap 7: 3.5, 2.1, 1.4 -> floors 3, 2, 1 (6), and
    # the largest remainder (class 0, 0.5) gets the seventh
    assert class_quotas(torch.tensor([5, 3, 2]), 7).tolist() == [4, 2, 1]
    assert class_quotas(torch.tensor([5, 3, 2]), 10).tolist() == [5, 3, 2]
    assert class_quotas(torch.tensor([98, 1, 1]), 10).tolist() == [10, 0, 0]
    assert int(class_quotas(torch.tensor([7, 7, 7]), 20).sum()) == 20


def test_subsample_is_stratified_seeded_and_in_order():
    labels = torch.tensor([0] * 60 + [1] * 30 + [2] * 10)[torch.randperm(100)]
    features = torch.arange(100, dtype=torch.float64).unsqueeze(1)
    x, y = subsample(features, labels, 20, seed=4)
    assert torch.bincount(y).tolist() == [12, 6, 2]  # the 60/30/10 shares of 20
    assert torch.equal(labels[x[:, 0].long()], y)  # rows and labels stay paired
    assert bool((x[1:, 0] > x[:-1, 0]).all())  # original order kept
    again, _ = subsample(features, labels, 20, seed=4)
    other, _ = subsample(features, labels, 20, seed=5)
    assert torch.equal(x, again) and not torch.equal(x, other)
    assert subsample(features, labels, None, seed=0)[0] is features


def test_subsampled_otdd_approaches_exact_as_the_subset_grows():
    """The approximation for datasets too large for one problem: a class-stratified subset
    per side. Its error against the exact OTDD of every point (network simplex on both
    levels) shrinks as the subset grows. Here, 400 points a side in d = 64 whose OTDD is
    mostly within-class noise, half the points gave 2-3% and an eighth 7-14% (on the
    10k x 10k, d = 768 clouds of benchmarks/bench_otdd_scale.py, half: 0.1-0.4%)."""
    xs, ys = labelled(400, 64, 4, seed=30, scale=1.0)
    xt, yt = labelled(400, 64, 4, seed=31, shift=0.7, scale=1.0)
    exact = otdd(xs, ys, xt, yt, OTDDConfig(inner="exact", outer="exact", max_samples=None))

    def mean_error(cap):
        errors = [
            otdd(xs, ys, xt, yt, OTDDConfig(inner="exact", outer="exact", max_samples=cap, seed=s))
            / exact
            - 1
            for s in range(3)
        ]
        return float(torch.stack(errors).abs().mean())

    half, eighth = mean_error(200), mean_error(50)
    assert half < eighth / 2
    assert half < 0.04
