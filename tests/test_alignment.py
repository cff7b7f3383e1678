import numpy as np
import pytest
import torch
from sklearn.metrics.pairwise import cosine_similarity, euclidean_distances, rbf_kernel

from orca.alignment.metrics import ALIGNMENT_METRICS, MMD_BANDWIDTH_SCALES, create_alignment_metric
from orca.alignment.pseudo_labels import kmeans_pseudo_labels
from orca.config.stages import AlignConfig
from orca.otdd import OTDD, OTDDConfig


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    xs = rng.normal(size=(30, 5))
    xt = rng.normal(size=(20, 5)) + 0.7
    ys, yt = np.arange(30) % 3, np.arange(20) % 2
    return xs, ys, xt, yt


def _t(*arrays):
    return [torch.from_numpy(a) for a in arrays]


def test_registry_lists_the_paper_metrics():
    assert ALIGNMENT_METRICS.names() == ["cosine", "l2", "mmd", "otdd"]
    with pytest.raises(ValueError, match=r"align\.metric: unknown alignment metric 'wasserstein'"):
        AlignConfig(metric="wasserstein")


def test_mmd_matches_sklearn_rbf_kernels(data):
    xs, ys, xt, yt = data
    loss = create_alignment_metric("mmd", *_t(xs, ys))
    d = euclidean_distances(xs, xs) ** 2
    pairs = np.sort(d[np.triu_indices(len(xs), k=1)])
    median = np.sqrt(pairs[(len(pairs) - 1) // 2])  # the lower median, as torch.median
    expected = 0.0
    for scale in MMD_BANDWIDTH_SCALES:
        gamma = 1.0 / (2 * (median * scale) ** 2)
        expected += (
            rbf_kernel(xs, xs, gamma=gamma).mean()
            + rbf_kernel(xt, xt, gamma=gamma).mean()
            - 2 * rbf_kernel(xs, xt, gamma=gamma).mean()
        )
    xt_t, yt_t = _t(xt, yt)
    assert float(loss(xt_t, yt_t)) == pytest.approx(expected, rel=1e-6)
    assert float(loss(torch.from_numpy(xs), torch.from_numpy(ys))) == pytest.approx(0, abs=1e-9)


def test_l2_and_cosine_match_sklearn(data):
    xs, ys, xt, yt = data
    xt_t, yt_t = _t(xt, yt)
    l2 = create_alignment_metric("l2", *_t(xs, ys))(xt_t, yt_t)
    assert float(l2) == pytest.approx((euclidean_distances(xs, xt) ** 2).mean(), rel=1e-9)
    cosine = create_alignment_metric("cosine", *_t(xs, ys))(xt_t, yt_t)
    assert float(cosine) == pytest.approx(1 - cosine_similarity(xs, xt).mean(), rel=1e-9)


@pytest.mark.parametrize("name", ["mmd", "l2", "cosine", "otdd"])
def test_every_metric_is_differentiable_in_the_target(name, data):
    xs, ys, xt, yt = data
    target = torch.from_numpy(xt).requires_grad_(True)
    loss = create_alignment_metric(name, *_t(xs, ys))(target, torch.from_numpy(yt))
    loss.backward()
    assert target.grad is not None and torch.isfinite(target.grad).all()
    assert target.grad.abs().sum() > 0


def test_otdd_metric_is_the_otdd(data):
    xs, ys, xt, yt = data
    loss = create_alignment_metric("otdd", *_t(xs, ys), inner="gaussian", epsilon=0.1)
    reference = OTDD(*_t(xs, ys), OTDDConfig(inner="gaussian", outer="sinkhorn", epsilon=0.1))
    assert float(loss(*_t(xt, yt))) == pytest.approx(float(reference(*_t(xt, yt))), rel=1e-9)


def test_kmeans_pseudo_labels():
    rng = np.random.default_rng(0)
    centers = np.array([[0.0, 0.0], [10.0, 10.0], [-10.0, 10.0]])
    targets = np.concatenate([c + rng.normal(size=(20, 2)) for c in centers]).reshape(60, 1, 2)
    labels = kmeans_pseudo_labels(targets, k=3, seed=0)
    assert labels.dtype == np.int64 and labels.shape == (60,)
    for block in range(3):  # each generated cluster gets a single label
        assert len(set(labels[block * 20 : (block + 1) * 20])) == 1
    assert len(set(labels)) == 3
    mini = kmeans_pseudo_labels(targets, k=3, seed=0, minibatch_threshold=10)
    assert len(set(mini)) == 3
    assert len(set(kmeans_pseudo_labels(targets[:4], k=10))) <= 4  # k capped at N
    bad = targets.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        kmeans_pseudo_labels(bad)
