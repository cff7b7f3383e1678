"""OTDD's source-side cache, the class layout it rests on, and the pieces behind the fast path:
distance blocks, scratch buffers, float32 Bures eigenvalues, threaded exact inner OT."""

from __future__ import annotations

import math

import numpy as np
import ot
import pytest
import torch

import orca.otdd.distance as distance_module
import orca.otdd.solver as solver_module
from orca.otdd import OTDD, OTDDConfig, class_groups, label_distances, otdd, squared_distances
from orca.otdd.bures import GaussianInner
from orca.otdd.costs import centred, distance_matrix
from orca.otdd.grouping import Side, class_layout
from orca.otdd.inner import ExactInner, SinkhornInner
from orca.otdd.scratch import scratch, scratch_scope
from orca.otdd.sinkhorn import sinkhorn_cost

KIND_CLASSES = {"exact": ExactInner, "sinkhorn": SinkhornInner, "gaussian": GaussianInner}


def labelled(n, d, classes, seed, shift=0.0, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    labels = (torch.arange(n) % classes)[torch.randperm(n, generator=gen)]
    centres = torch.zeros(classes, d, dtype=dtype)
    centres[:, 0] = torch.arange(classes, dtype=dtype)
    return centres[labels] + shift + 0.5 * torch.randn(n, d, generator=gen, dtype=dtype), labels


@pytest.mark.parametrize("outer", ["sinkhorn", "exact"])
@pytest.mark.parametrize("inner", ["exact", "sinkhorn", "gaussian"])
def test_cached_object_gives_the_values_of_fresh_ones(inner, outer):
    xs, ys = labelled(40, 3, 3, seed=1)
    targets = [labelled(30, 3, 2, seed=2, shift=0.5), labelled(26, 3, 3, seed=3, shift=-0.3)]
    config = OTDDConfig(inner=inner, outer=outer, max_samples_per_class=9)
    cached = OTDD(xs, ys, config)
    for xt, yt in targets:
        fresh = OTDD(xs.clone(), ys.clone(), config)(xt, yt).item()
        assert cached(xt, yt).item() == pytest.approx(fresh, rel=1e-12, abs=1e-12)
        assert otdd(xs, ys, xt, yt, config).item() == pytest.approx(fresh, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("outer", ["sinkhorn", "exact"])
@pytest.mark.parametrize("inner", ["exact", "sinkhorn", "gaussian"])
def test_source_only_work_is_done_once(inner, outer, monkeypatch):
    """Per-class state, W_ss and the source self distances are computed at construction only;
    calls touch the source only through the source x target distances."""
    xs, ys = labelled(40, 3, 4, seed=4)
    xt, yt = labelled(24, 3, 2, seed=5, shift=0.4)
    kind = KIND_CLASSES[inner]
    calls = []
    for name in ("prepare", "within"):
        real = getattr(kind, name)

        def counting(self, side, *args, real=real, name=name):
            calls.append((name, len(side)))
            return real(self, side, *args)

        monkeypatch.setattr(kind, name, counting)
    real_matrix = distance_module.distance_matrix

    def counting_matrix(left, right=None, *args):
        calls.append(("distances", len(left.points), None if right is None else len(right)))
        return real_matrix(left, right, *args)

    monkeypatch.setattr(distance_module, "distance_matrix", counting_matrix)
    distance = OTDD(xs, ys, OTDDConfig(inner=inner, outer=outer))
    assert ("prepare", 40) in calls
    if outer == "sinkhorn":
        assert ("within", 40) in calls and ("distances", 40, None) in calls
    calls.clear()
    distance(xt, yt)
    distance(xt * 1.2, yt)
    assert not [call for call in calls if call[:2] in {("prepare", 40), ("within", 40)}]
    assert ("distances", 40, None) not in calls
    assert calls.count(("distances", 40, 24)) == 2
    assert calls.count(("prepare", 24)) == 2


def test_cached_source_state_holds_what_the_kinds_reuse():
    xs, ys = labelled(45, 4, 3, seed=6)
    groups = class_groups(xs, ys)[1]
    gaussian = OTDD(xs, ys, OTDDConfig(inner="gaussian"))._source_state
    for k, x in enumerate(groups):
        covariance = torch.cov(x.T, correction=0) + 1e-6 * torch.eye(4, dtype=x.dtype)
        torch.testing.assert_close(gaussian.means[k], x.mean(0))
        torch.testing.assert_close(gaussian.covariances[k], covariance)
        torch.testing.assert_close(gaussian.roots[k] @ gaussian.roots[k], covariance)

    config = OTDDConfig(inner="sinkhorn", sinkhorn_max_iter=20000, sinkhorn_tol=1e-10)
    self_terms = OTDD(xs, ys, config)._source_state  # OT_eps(alpha_k, alpha_k) per class
    for k, x in enumerate(groups):
        expected = sinkhorn_cost(
            squared_distances(x, x), epsilon=0.1, max_iter=20000, tol=1e-10, symmetric=True
        )
        assert self_terms[k].item() == pytest.approx(expected.item(), rel=1e-8)

    exact = OTDD(xs, ys, OTDDConfig(inner="exact"))
    shifted = exact._source.points - exact._source.points.mean(0)
    torch.testing.assert_close(exact._source_centred.norms, (shifted * shifted).sum(1))


def test_layout_matches_class_groups_and_keeps_classes_contiguous():
    labels = torch.tensor([3, 1, 3, 3, 0, 1, 3, 3, 1, 0, 3])
    layout = class_layout(labels, cap=2, seed=7)
    features = torch.arange(len(labels), dtype=torch.float64).unsqueeze(1)
    classes, groups = class_groups(features, labels, cap=2, seed=7)
    assert layout.classes.tolist() == classes.tolist() == [0, 1, 3]
    assert layout.sizes == [2, 3, 6] and layout.starts == [0, 2, 5] and layout.inner == [2, 2, 2]
    assert labels[layout.order].tolist() == [0, 0, 1, 1, 1, 3, 3, 3, 3, 3, 3]
    assert layout.index.tolist() == [0, 0, 1, 1, 1, 2, 2, 2, 2, 2, 2]
    assert sorted(layout.order.tolist()) == list(range(len(labels)))
    side = Side(features, labels, cap=2, seed=7)
    for k, group in enumerate(groups):
        torch.testing.assert_close(side.inner_sample(k), group)


def test_distance_matrices_match_squared_distances():
    x = torch.randn(37, 5, dtype=torch.float64) + 3.0
    y = torch.randn(23, 5, dtype=torch.float64)
    own = distance_matrix(centred(x), None, block=8)
    assert torch.equal(own, own.T) and torch.all(torch.diagonal(own) == 0)
    torch.testing.assert_close(own, squared_distances(x, x), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(
        distance_matrix(centred(x), y, block=8), squared_distances(x, y), rtol=1e-12, atol=1e-12
    )


def test_scratch_buffers_are_reused_inside_a_scope_only():
    like = torch.zeros(1)
    with scratch_scope():
        first = scratch("cost", (6, 5), like)
        second = scratch("cost", (4, 4), like)
        other = scratch("kernel", (6, 5), like)
        assert second.data_ptr() == first.data_ptr() and other.data_ptr() != first.data_ptr()
        grown = scratch("cost", (8, 8), like)
        assert grown.shape == (8, 8)
    outside = scratch("cost", (6, 5), like), scratch("cost", (6, 5), like)
    assert outside[0].data_ptr() != outside[1].data_ptr()


def test_exact_inner_on_threads_equals_network_simplex():
    """The pair problems run on a thread pool; each value is POT's emd2 of its pair."""
    xa, ya = labelled(24, 3, 3, seed=8)
    xb, yb = labelled(24, 3, 3, seed=9, shift=0.6)
    result = label_distances(xa, ya, xb, yb, "exact").distances
    for i in range(3):
        for j in range(3):
            a, b = xa[ya == i].numpy(), xb[yb == j].numpy()
            expected = ot.emd2(np.full(8, 1 / 8), np.full(8, 1 / 8), ot.dist(a, b))
            assert result[i, j].item() == pytest.approx(expected, rel=1e-10)


def test_gaussian_float32_is_close_to_float64():
    xa, ya = labelled(300, 16, 3, seed=10)
    xb, yb = labelled(200, 16, 2, seed=11, shift=0.2)
    wide = label_distances(xa, ya, xb, yb, "gaussian").distances
    narrow = label_distances(xa.float(), ya, xb.float(), yb, "gaussian").distances
    assert narrow.dtype == torch.float32
    torch.testing.assert_close(narrow.double(), wide, rtol=1e-5, atol=1e-6)


def test_batched_inner_sinkhorn_with_unequal_classes_matches_pairwise():
    """Blocks of different shapes are solved as one zero-padded batch without copies; each
    value equals the divergence of its pair solved on its own."""
    gen = torch.Generator().manual_seed(12)
    sizes_a, sizes_b = [5, 9, 7], [8, 3]
    xa = 0.5 * torch.randn(sum(sizes_a), 2, generator=gen, dtype=torch.float64)
    xb = 0.5 * torch.randn(sum(sizes_b), 2, generator=gen, dtype=torch.float64) + 0.3
    ya = torch.repeat_interleave(torch.arange(3), torch.tensor(sizes_a))
    yb = torch.repeat_interleave(torch.arange(2), torch.tensor(sizes_b))
    solver = {"epsilon": 0.1, "max_iter": 20000, "tol": 1e-10}
    result = label_distances(xa, ya, xb, yb, "sinkhorn", **solver).distances
    for i in range(3):
        for j in range(2):
            a, b = xa[ya == i], xb[yb == j]
            expected = sinkhorn_cost(squared_distances(a, b), **solver) - 0.5 * (
                sinkhorn_cost(squared_distances(a, a), symmetric=True, **solver)
                + sinkhorn_cost(squared_distances(b, b), symmetric=True, **solver)
            )
            assert result[i, j].item() == pytest.approx(expected.item(), rel=1e-7, abs=1e-9)


def test_block_costs_solve_like_the_dense_padded_batch():
    """`solve_blocks` (blocks never copied) equals `solve_batched` on the zero-padded batch,
    including the log-domain rescue, which works on the materialised costs."""
    gen = torch.Generator().manual_seed(13)
    full = torch.rand(30, 20, generator=gen, dtype=torch.float64)
    blocks = [full[0:5, 0:8], full[5:14, 8:11], full[14:21, 11:19]]  # views, any strides
    costs = solver_module._BlockCost(blocks, 9, 8)
    dense = costs.dense()
    assert dense.shape == (3, 9, 8) and costs.largest() == pytest.approx(float(dense.max()))
    for k, block in enumerate(blocks):
        assert torch.equal(dense[k, : block.shape[0], : block.shape[1]], block)
        assert dense[k].sum().item() == pytest.approx(block.sum().item())  # 0 elsewhere
    options = {"epsilon": 0.05, "max_iter": 20000, "tol": 1e-11, "symmetric": False}
    by_blocks = solver_module.solve_blocks(blocks, **options)
    log_a = torch.full((3, 9), -math.inf, dtype=torch.float64)
    log_b = torch.full((3, 8), -math.inf, dtype=torch.float64)
    for k, block in enumerate(blocks):
        log_a[k, : block.shape[0]] = -math.log(block.shape[0])
        log_b[k, : block.shape[1]] = -math.log(block.shape[1])
    valid = torch.isfinite(log_a).unsqueeze(2) & torch.isfinite(log_b).unsqueeze(1)
    by_dense = solver_module.solve_batched(dense, log_a, log_b, valid=valid, **options)
    torch.testing.assert_close(
        solver_module.entropic_values(by_blocks, 0.05),
        solver_module.entropic_values(by_dense, 0.05),
        rtol=1e-10,
        atol=1e-12,
    )
    rescued = []
    for cost in (costs, solver_module._DenseCost(dense)):
        kernel = solver_module._Kernel(cost, log_a, log_b, valid, symmetric=False)
        kernel.build(0.05)
        kernel.sweep()
        kernel.rescue()
        rescued.append(kernel.potentials())
    torch.testing.assert_close(rescued[0], rescued[1])


def test_float32_sinkhorn_stops_at_its_rounding_floor():
    """A float32 solve asked for an unreachable tolerance stops once its error is rounding
    noise, long before max_iter, at the value float64 converges to."""
    from orca.otdd import sinkhorn_potentials

    gen = torch.Generator().manual_seed(14)
    x, y = torch.randn(700, 3, generator=gen), torch.randn(600, 3, generator=gen) + 0.2
    cost = squared_distances(x, y)
    options = {"epsilon": 0.05, "max_iter": 5000, "tol": 1e-12}
    narrow = sinkhorn_potentials(cost, **options)
    assert narrow.iterations < 1000 and narrow.marginal_error < 1e-6
    wide = sinkhorn_cost(cost.double(), **options)
    assert wide.dtype == torch.float64
    assert sinkhorn_cost(cost, **options).item() == pytest.approx(wide.item(), rel=1e-5)
