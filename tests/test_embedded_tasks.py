"""The embedded demo suite's real tasks: loaders, validation at the loader boundary, and
a forward pass of each task's model around the tiny test BERT."""

from __future__ import annotations

import gzip
import re

import numpy as np
import pytest
import torch

import orca.data.sklearn_tasks as sklearn_tasks
import orca.data.ucr as ucr
from orca.data.tasks import TASKS, RawTask, get_task
from orca.model.orca_model import create_model

EMBEDDED = ("arrowhead", "acsf1", "basicmotions", "covid3month", "digits", "breast-cancer")
# name -> (train rows, test rows)
SIZES = {
    "arrowhead": (36, 175),
    "acsf1": (100, 100),
    "basicmotions": (40, 40),
    "covid3month": (140, 61),
    "digits": (sklearn_tasks.DIGITS_TRAIN_SIZE, 540),
    "breast-cancer": (sklearn_tasks.BREAST_CANCER_TRAIN_SIZE, 171),
}
_LOADED: dict[str, RawTask] = {}


def loaded(name: str) -> RawTask:
    if name not in _LOADED:
        _LOADED[name] = TASKS.get(name).loader()
    return _LOADED[name]


def _check_targets(spec, y: np.ndarray, rows: int) -> None:
    if spec.output == "classification":
        assert y.dtype == np.int64 and y.shape == (rows,)
        assert y.min() >= 0 and y.max() < spec.num_outputs
    else:
        assert y.dtype == np.float32 and y.shape == (rows, spec.num_outputs)
        assert np.isfinite(y).all()


@pytest.mark.parametrize("name", EMBEDDED)
def test_loader_matches_the_declared_spec(name):
    spec, raw = TASKS.get(name), loaded(name)
    n_train, n_test = SIZES[name]
    assert raw.x_train.shape == (n_train, *spec.input_shape)
    assert raw.x_test.shape == (n_test, *spec.input_shape)
    for x in (raw.x_train, raw.x_test):
        assert x.dtype == np.float32 and np.isfinite(x).all()
    _check_targets(spec, raw.y_train, n_train)
    _check_targets(spec, raw.y_test, n_test)
    if spec.output == "classification":
        assert len(raw.label_names) == spec.num_outputs
        # every class is seen in training
        assert set(np.unique(raw.y_train)) == set(range(spec.num_outputs))
    assert spec.default_backbone == "minilm-l6"
    assert raw.source and raw.version


@pytest.mark.parametrize("name", EMBEDDED)
def test_loaders_are_deterministic(name):
    first, second = loaded(name), TASKS.get(name).loader()
    for key in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(first, key), getattr(second, key))
    assert first.source == second.source


@pytest.mark.parametrize(
    "loader",
    [sklearn_tasks.load_digits_task, sklearn_tasks.load_breast_cancer_task],
    ids=["digits", "breast-cancer"],
)
def test_our_splits_are_disjoint_stratified_and_sized(loader):
    from sklearn.datasets import load_breast_cancer, load_digits

    source = load_digits() if loader is sklearn_tasks.load_digits_task else load_breast_cancer()
    labels = source.target
    train, test = sklearn_tasks.stratified_split(labels, 100, seed=0)
    assert len(np.intersect1d(train, test)) == 0
    assert len(train) == 100 and len(test) == int(np.ceil(0.3 * len(labels)))  # sklearn rounds up
    # stratified: each class's share within one example of its share overall
    for c in np.unique(labels):
        assert abs((labels[train] == c).sum() - 100 * (labels == c).mean()) <= 1
    full = loader(train_size=None)
    assert len(full.x_train) + len(full.x_test) == len(labels)
    other_seed = loader(seed=1)
    assert not np.array_equal(other_seed.y_train, loader().y_train)


def test_digits_pixels_are_scaled_images():
    from sklearn.datasets import load_digits

    raw = loaded("digits")
    assert raw.x_train.min() >= 0 and raw.x_train.max() <= 1
    train, test = sklearn_tasks.stratified_split(load_digits().target, len(raw.x_train))
    np.testing.assert_allclose(raw.x_test[:, 0], load_digits().images[test] / 16, rtol=1e-6)
    np.testing.assert_array_equal(raw.y_train, load_digits().target[train])


def test_breast_cancer_is_standardised_with_training_statistics_only():
    from sklearn.datasets import load_breast_cancer

    raw = loaded("breast-cancer")
    features = load_breast_cancer().data
    train, test = sklearn_tasks.stratified_split(load_breast_cancer().target, len(raw.x_train))
    mean, std = features[train].mean(axis=0), features[train].std(axis=0)
    assert raw.x_train.shape[1] == 1  # numeric features only: one channel
    np.testing.assert_allclose(raw.x_train[:, 0].mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(raw.x_train[:, 0].std(axis=0), 1, atol=1e-4)
    np.testing.assert_allclose(
        raw.x_test[:, 0], (features[test] - mean) / std, rtol=1e-4, atol=1e-5
    )
    # test statistics did not leak in: the test columns are not themselves standardised
    assert np.abs(raw.x_test[:, 0].mean(axis=0)).max() > 1e-3
    # changing the test rows leaves the training encoding unchanged
    a, b = sklearn_tasks.standardise_columns(features[train], features[test])
    a2, _ = sklearn_tasks.standardise_columns(features[train], features[test] * 100)
    np.testing.assert_array_equal(a, a2)
    np.testing.assert_allclose(a, raw.x_train[:, 0], rtol=1e-6)
    np.testing.assert_allclose(b, raw.x_test[:, 0], rtol=1e-6)


def test_covid3month_standardises_with_training_statistics():
    from aeon.datasets import load_regression

    raw = loaded("covid3month")
    x_train, y_train = load_regression("Covid3Month", split="train")
    x_test, y_test = load_regression("Covid3Month", split="test")
    np.testing.assert_allclose(raw.y_train.mean(), 0, atol=1e-5)
    np.testing.assert_allclose(raw.y_train.std(), 1, atol=1e-4)
    expected = (y_test - y_train.mean()) / y_train.std()
    np.testing.assert_allclose(raw.y_test[:, 0], expected, rtol=1e-4, atol=1e-5)
    log_train = np.log1p(x_train)
    expected_x = (np.log1p(x_test) - log_train.mean()) / log_train.std()
    np.testing.assert_allclose(raw.x_test, expected_x, rtol=1e-4, atol=1e-4)
    assert "targets standardised" in raw.source


def test_arrowhead_is_cropped_to_a_usable_length():
    raw = loaded("arrowhead")
    full = ucr.load_ucr("ArrowHead")
    assert full.x_train.shape[-1] == 251
    np.testing.assert_array_equal(raw.x_train, full.x_train[..., :250])
    np.testing.assert_array_equal(raw.y_test, full.y_test)
    with pytest.raises(ValueError, match="cannot crop"):
        ucr.crop_series(full, 252)


def test_ucr_series_with_nan_or_ragged_lengths_are_refused():
    with pytest.raises(ValueError, match="4 of 12 values are NaN or inf"):
        ucr._series("X", "train", np.array([[[1.0, np.nan, 2.0]]] * 3 + [[[np.inf, 1, 1]]]))
    ragged = [np.zeros((1, 5)), np.zeros((1, 7))]
    with pytest.raises(ValueError, match="variable-length"):
        ucr._series("X", "test", ragged)
    series = ucr._series("X", "train", np.ones((2, 1, 4)))
    assert series.dtype == np.float32 and series.shape == (2, 1, 4)


@pytest.mark.parametrize("name", EMBEDDED)
def test_each_task_builds_a_model_with_the_right_outputs(name, tiny_bert_dir):
    spec = TASKS.get(name)
    assert spec.max_seq_len <= 128  # the tiny BERT has 128 positions, as does every task here
    raw = loaded(name)
    model = create_model(spec, str(tiny_bert_dir), seed=0)
    with torch.no_grad():
        out = model(torch.from_numpy(raw.x_train[:3]))
    assert out.shape == (3, spec.num_outputs)
    assert torch.isfinite(out).all()
    tokens = model.embed(torch.from_numpy(raw.x_train[:1])).shape[1]
    assert 1 < tokens <= spec.max_seq_len


def _write_idx(path, array: np.ndarray, code: int, compress: bool = True) -> None:
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    data = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    path.write_bytes(gzip.compress(data) if compress else data)


def _write_fashion(directory, n_train=40, n_test=20, compress=True):
    rng = np.random.default_rng(0)
    suffix = ".gz" if compress else ""
    arrays = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        _write_idx(directory / f"{prefix}-images-idx3-ubyte{suffix}", images, 0x08, compress)
        _write_idx(directory / f"{prefix}-labels-idx1-ubyte{suffix}", labels, 0x08, compress)
        arrays[prefix] = (images, labels)
    return arrays


@pytest.mark.parametrize("compress", [True, False])
def test_fashion_mnist_reads_idx_files_and_subsamples(tmp_path, compress):
    arrays = _write_fashion(tmp_path, compress=compress)
    raw = sklearn_tasks.load_fashion_mnist(tmp_path, train_size=20, test_size=None)
    spec = TASKS.get("fashion-mnist")
    assert raw.x_train.shape == (20, *spec.input_shape) and raw.x_train.dtype == np.float32
    assert raw.x_test.shape == (20, 1, 28, 28)
    assert np.bincount(raw.y_train).tolist() == [2] * 10  # stratified
    np.testing.assert_allclose(raw.x_test[:, 0], arrays["t10k"][0] / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(raw.y_test, arrays["t10k"][1])
    assert raw.y_train.dtype == np.int64 and len(raw.label_names) == 10
    again = sklearn_tasks.load_fashion_mnist(tmp_path, train_size=20, test_size=None)
    np.testing.assert_array_equal(raw.x_train, again.x_train)


def test_fashion_mnist_absent_or_corrupt(tmp_path, monkeypatch):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        sklearn_tasks.load_fashion_mnist(missing)
    monkeypatch.setenv("ORCA_FASHION_MNIST_DIR", str(missing))
    with pytest.raises(FileNotFoundError, match="nowhere"):
        TASKS.get("fashion-mnist").loader()
    _write_fashion(tmp_path)
    bad = tmp_path / "train-labels-idx1-ubyte.gz"
    _write_idx(bad, np.full(40, 12, dtype=np.uint8), 0x08)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 10\)"):
        sklearn_tasks.load_fashion_mnist(tmp_path)
    bad.write_bytes(gzip.compress(b"\x00\x00\x08\x01" + np.array([50], ">u4").tobytes() + b"x"))
    with pytest.raises(ValueError, match="declares shape"):
        sklearn_tasks.load_fashion_mnist(tmp_path)
    bad.write_bytes(b"not idx")
    with pytest.raises(ValueError, match="not an IDX file"):
        sklearn_tasks.read_idx(bad)


def test_demo_tasks_declare_small_configs():
    """Demo tasks use the default recipe (every choice "auto") with a small time budget."""
    from orca.suites import SUITES

    for name in sorted({*SUITES.get("demo"), *EMBEDDED, "fashion-mnist"}):
        spec = get_task(name)
        assert spec.align.samples_per_class <= 32 and spec.align.epochs <= 60
        assert spec.refine.needs_plan and spec.refine.patience == "auto"
        assert spec.refine.budget_s <= 60 and spec.max_seq_len <= 32
        assert spec.describe()["name"] == name
