"""Image and tabular tasks whose data ships in packages, so they run offline.

Registered here:
    digits         scikit-learn's 8x8 handwritten digits (1 channel), 10 classes
    breast-cancer  scikit-learn's Wisconsin diagnostic breast cancer (wdbc, in OpenML-CC18):
                   30 numeric features, 2 classes, scored by 1 - AUROC as CC18 is in the paper
    fashion-mnist  Fashion-MNIST from the Debian package dataset-fashion-mnist, read from
                   /usr/share/datasets/fashion-mnist (or $ORCA_FASHION_MNIST_DIR); loading
                   raises FileNotFoundError naming the directory when it is absent

The train/test splits of digits and breast-cancer are ours: stratified, from a fixed seed,
30% of the examples held out for test. The training sets are then subsampled (stratified,
same seed) to the sizes below, so that one run of a task costs a few seconds on 2 CPU cores
with the 6-layer, D=384 MiniLM body; the loaders take other sizes (None keeps them all).
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from orca.data.tabular import encode_tabular
from orca.data.tasks import RawTask, TaskSpec, register_task
from orca.data.ucr import DEMO_ALIGN, DEMO_REFINE

SPLIT_SEED = 0
TEST_FRACTION = 0.3
DIGITS_TRAIN_SIZE = 300
BREAST_CANCER_TRAIN_SIZE = 150
FASHION_MNIST_TRAIN_SIZE = 2000
FASHION_MNIST_TEST_SIZE = 1000
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_LABELS = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)


def _sklearn_version() -> str:
    import sklearn

    return f"scikit-learn=={sklearn.__version__}"


def stratified_subset(labels: np.ndarray, pool: np.ndarray, size: int | None, seed: int):
    """`size` indices drawn from `pool`, stratified by `labels[pool]`, sorted.

    None or a size >= len(pool) keeps the whole pool.
    """
    from sklearn.model_selection import train_test_split

    if size is None or size >= len(pool):
        return np.sort(pool)
    if size < 1:
        raise ValueError(f"subset size must be positive, got {size}")
    chosen, _ = train_test_split(pool, train_size=size, random_state=seed, stratify=labels[pool])
    return np.sort(chosen)


def stratified_split(
    labels: np.ndarray, train_size: int | None, seed: int = SPLIT_SEED
) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) index arrays: TEST_FRACTION of the examples held out for test
    (stratified), then the rest subsampled to `train_size` (stratified); both sorted and
    disjoint."""
    from sklearn.model_selection import train_test_split

    everything = np.arange(len(labels))
    pool, test = train_test_split(
        everything, test_size=TEST_FRACTION, random_state=seed, stratify=labels
    )
    return stratified_subset(labels, pool, train_size, seed), np.sort(test)


def _check_labels(name: str, labels: np.ndarray, num_classes: int) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise ValueError(f"{name}: expected 1-D integer labels, got {labels.dtype} {labels.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"{name}: labels must lie in [0, {num_classes}), found [{labels.min()}, {labels.max()}]"
        )
    return labels.astype(np.int64)


def load_digits_task(train_size: int | None = DIGITS_TRAIN_SIZE, seed: int = SPLIT_SEED):
    """scikit-learn's 1,797 digits as (N, 1, 8, 8) float32 in [0, 1] (pixels / 16)."""
    from sklearn.datasets import load_digits

    data = load_digits()
    pixels = np.asarray(data.images, dtype=np.float32)  # (1797, 8, 8), values 0..16
    if pixels.shape[1:] != (8, 8) or pixels.min() < 0 or pixels.max() > 16:
        raise ValueError(f"digits: expected (N, 8, 8) pixels in [0, 16], got {pixels.shape}")
    images = (pixels / 16.0)[:, None]  # (N, 1, 8, 8)
    labels = _check_labels("digits", data.target, 10)
    train, test = stratified_split(labels, train_size, seed)
    return RawTask(
        x_train=images[train],
        y_train=labels[train],
        x_test=images[test],
        y_test=labels[test],
        source=(
            f"sklearn.datasets.load_digits(); stratified split seed {seed}: "
            f"{TEST_FRACTION:.0%} test, train subsampled to {len(train)}"
        ),
        version=_sklearn_version(),
        label_names=tuple(str(d) for d in range(10)),
    )


def standardise_columns(train: np.ndarray, *others: np.ndarray) -> tuple[np.ndarray, ...]:
    """Standardise every array's columns with the mean and standard deviation of `train`'s
    (a constant column keeps unit scale). Returns float32 (train, *others)."""
    mean = train.mean(axis=0)
    std = train.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return tuple(((a - mean) / std).astype(np.float32) for a in (train, *others))


def load_breast_cancer_task(
    train_size: int | None = BREAST_CANCER_TRAIN_SIZE, seed: int = SPLIT_SEED
) -> RawTask:
    """wdbc: (N, 1, 30) float32, one token per numeric feature, standardised with the
    training rows' statistics only; labels 0 = malignant, 1 = benign."""
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    features = np.asarray(data.data, dtype=np.float64)  # (569, 30)
    if features.ndim != 2 or features.shape[1] != 30 or not np.isfinite(features).all():
        raise ValueError(f"breast-cancer: expected 30 finite features, got {features.shape}")
    labels = _check_labels("breast-cancer", data.target, 2)
    train, test = stratified_split(labels, train_size, seed)
    numeric_train, numeric_test = standardise_columns(features[train], features[test])
    no_categories = np.zeros((len(features), 0), dtype=np.int64)
    return RawTask(
        x_train=encode_tabular(numeric_train, no_categories[train], []),  # (N, 1, 30)
        y_train=labels[train],
        x_test=encode_tabular(numeric_test, no_categories[test], []),
        y_test=labels[test],
        source=(
            f"sklearn.datasets.load_breast_cancer(); stratified split seed {seed}: "
            f"{TEST_FRACTION:.0%} test, train subsampled to {len(train)}; features "
            "standardised with training statistics"
        ),
        version=_sklearn_version(),
        label_names=tuple(str(name) for name in data.target_names),
    )


# IDX element type codes (the MNIST file format) -> big-endian numpy dtypes
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (gzip-compressed or not) as a numpy array of its declared shape.

    Layout: two zero bytes, a type code, the number of dimensions n, then n big-endian
    uint32 sizes and the elements in row-major order. Raises ValueError naming the file for
    a bad header or a size that disagrees with the header.
    """
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{path}: not an IDX file (header {raw[:4].hex()})")
    dtype, ndim = np.dtype(_IDX_DTYPES[raw[2]]), raw[3]
    offset = 4 + 4 * ndim
    if ndim == 0 or len(raw) < offset:
        raise ValueError(f"{path}: IDX header declares {ndim} dimensions")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - offset != expected:
        raise ValueError(
            f"{path}: IDX header declares shape {shape} ({expected} bytes of data), "
            f"but the file holds {len(raw) - offset}"
        )
    return (
        np.frombuffer(raw, dtype=dtype, offset=offset)
        .reshape(shape)
        .astype(dtype.newbyteorder("="))
    )


def fashion_mnist_dir() -> Path:
    return Path(os.environ.get("ORCA_FASHION_MNIST_DIR", FASHION_MNIST_DIR)).expanduser()


def _find_idx(directory: Path, stem: str) -> Path:
    for name in (f"{stem}.gz", stem):
        found = sorted(directory.rglob(name)) if directory.is_dir() else []
        if found:
            return found[0]
    raise FileNotFoundError(
        f"Fashion-MNIST not found: no {stem}.gz or {stem} under {directory} (install the "
        "Debian package dataset-fashion-mnist, or set ORCA_FASHION_MNIST_DIR to a directory "
        "holding the four IDX files)"
    )


def _read_fashion_split(directory: Path, prefix: str) -> tuple[np.ndarray, np.ndarray]:
    images_path = _find_idx(directory, f"{prefix}-images-idx3-ubyte")
    labels_path = _find_idx(directory, f"{prefix}-labels-idx1-ubyte")
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise ValueError(f"{images_path}: expected (N, 28, 28) uint8 images, got {images.shape}")
    if labels.shape != (len(images),):
        raise ValueError(
            f"{labels_path}: {labels.shape} labels for {len(images)} images in {images_path}"
        )
    return images, _check_labels(str(labels_path), labels, 10)


def load_fashion_mnist(
    directory: str | Path | None = None,
    train_size: int | None = FASHION_MNIST_TRAIN_SIZE,
    test_size: int | None = FASHION_MNIST_TEST_SIZE,
    seed: int = SPLIT_SEED,
) -> RawTask:
    """Fashion-MNIST's published split as (N, 1, 28, 28) float32 in [0, 1], each side
    subsampled (stratified, fixed seed) to the given size; None keeps all 60,000/10,000."""
    directory = Path(directory).expanduser() if directory is not None else fashion_mnist_dir()
    train_images, train_labels = _read_fashion_split(directory, "train")
    test_images, test_labels = _read_fashion_split(directory, "t10k")
    train = stratified_subset(train_labels, np.arange(len(train_labels)), train_size, seed)
    test = stratified_subset(test_labels, np.arange(len(test_labels)), test_size, seed)
    return RawTask(
        x_train=(train_images[train, None] / np.float32(255)).astype(np.float32),
        y_train=train_labels[train],
        x_test=(test_images[test, None] / np.float32(255)).astype(np.float32),
        y_test=test_labels[test],
        source=(
            f"Fashion-MNIST IDX files in {directory}; stratified subsample seed {seed}: "
            f"{len(train)} train, {len(test)} test"
        ),
        version="zalandoresearch/fashion-mnist (published split)",
        label_names=FASHION_MNIST_LABELS,
    )


register_task(
    TaskSpec(
        name="digits",
        description=(
            "scikit-learn digits: 8x8 grey-scale handwritten digits (1 channel, pixels scaled "
            f"to [0, 1]), 10 classes; stratified split, {DIGITS_TRAIN_SIZE} train / 540 test"
        ),
        modality="2d",
        input_shape=(1, 8, 8),
        output="classification",
        num_outputs=10,
        loss="cross_entropy",
        metric="error_rate",
        loader=load_digits_task,
        max_seq_len=4,  # patch 4 -> 2 x 2 = 4 tokens
        align=DEMO_ALIGN,
        refine=DEMO_REFINE,
    )
)

register_task(
    TaskSpec(
        name="breast-cancer",
        description=(
            "Wisconsin diagnostic breast cancer (wdbc, OpenML-CC18) from scikit-learn: 30 "
            "numeric features standardised with training statistics, one token each; "
            f"malignant vs benign; stratified split, {BREAST_CANCER_TRAIN_SIZE} train / "
            "171 test"
        ),
        modality="tabular",
        input_shape=(1, 30),
        output="classification",
        num_outputs=2,
        loss="cross_entropy",
        metric="one_minus_auroc",
        loader=load_breast_cancer_task,
        max_seq_len=30,  # one token per feature
        align=DEMO_ALIGN,
        refine=DEMO_REFINE,
    )
)

register_task(
    TaskSpec(
        name="fashion-mnist",
        description=(
            "Fashion-MNIST: 28x28 grey-scale clothing images (1 channel, pixels scaled to "
            f"[0, 1]), 10 classes; stratified subsample of the published split, "
            f"{FASHION_MNIST_TRAIN_SIZE} train / {FASHION_MNIST_TEST_SIZE} test. Needs the "
            "Debian package dataset-fashion-mnist (or $ORCA_FASHION_MNIST_DIR)"
        ),
        modality="2d",
        input_shape=(1, 28, 28),
        output="classification",
        num_outputs=10,
        loss="cross_entropy",
        metric="error_rate",
        loader=load_fashion_mnist,
        max_seq_len=16,  # patch 7 -> 4 x 4 = 16 tokens
        align=DEMO_ALIGN,
        refine=DEMO_REFINE,
    )
)
