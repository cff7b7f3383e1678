"""NAS-Bench-360 point-prediction tasks from their published files.

Formats (as the NAS-Bench-360 download page and the ORCA reference loaders read them):

  cifar100   the python version of CIFAR-100: pickled dicts {b"data": (N, 3072) uint8,
             b"fine_labels": [N]} in cifar-100-python/train and /test, class names in /meta.
             Scaled to [0, 1], then normalised per channel with CIFAR-100's mean/std.
             -> (N, 3, 32, 32), 100 classes. Validation: carved from train by ingest (0.2,
             NAS-Bench-360's 40k/10k split sizes).
  spherical  s2_cifar100.gz: a gzip pickle {"train"|"test": {"images": (N, 3, 60, 60),
             "labels": (N,)}}; images / 255. -> (N, 3, 60, 60), 100 classes.
  ninapro    ninapro_{train,val,test}.npy (N, 52, 16) sEMG windows and label_*.npy, published
             validation split kept. -> (N, 1, 16, 52) (the reference's permute), 18 classes.
  ecg        challenge2017.pkl: {"data": [record (L_i,)], "label": ["N"|"A"|"O"|"~"]}, the
             PhysioNet/CinC 2017 records. Each record is standardised, records are split
             90/10 train/test with sklearn's train_test_split(random_state=0) as the reference
             does, validation is 1/9 of the training records (split by record, so windows of
             one record never straddle splits), then every record is cut into windows of 1000
             with the reference's class-dependent strides (N 500, A 83, O 250, ~ 25).
             -> (N, 1, 1000), 4 classes.
  satellite  satellite_{train,test}.npy: np.save'd dicts {"data": (N, 46), "label": 1..24}.
             -> (N, 1, 46), labels - 1, 24 classes.
  deepsea    deepsea_filtered.npz: x_{train,val,test} (N, 1000, 4) one-hot DNA,
             y_* (N, 36) 0/1. -> (N, 4, 1000) float32, (N, 36) float32 0/1.

FSD50K is in nb360_audio, and the dense tasks (Darcy Flow, PSICOV, Cosmic) in nb360_dense.
ORCA_<TASK>_MAX_EXAMPLES caps every split at a seeded random subset, for the very large sets.
"""

from __future__ import annotations

import gzip
import tarfile
from pathlib import Path

import numpy as np

from orca.data.benchmarks import (
    benchmark_data_dir,
    example_limit,
    first_existing,
    read_npy,
    require,
    restricted_load,
    subset,
)
from orca.data.tasks import RawTask

CIFAR100_MEAN = np.array([0.5071, 0.4867, 0.4408], dtype=np.float32)
CIFAR100_STD = np.array([0.2675, 0.2565, 0.2761], dtype=np.float32)
ECG_CLASSES = ("N", "A", "O", "~")  # normal, atrial fibrillation, other rhythm, noisy
# Stride per class when cutting records into windows (the reference's slide_and_cut).
ECG_STRIDES = {0: 500, 1: 500 // 6, 2: 500 // 2, 3: 500 // 20}
ECG_WINDOW = 1000


def _directory(task: str, directory: str | Path | None) -> Path:
    return Path(directory).expanduser() if directory is not None else benchmark_data_dir(task)


def _capped(task: str, *arrays: np.ndarray, seed: int = 0) -> tuple[np.ndarray, ...]:
    keep = subset(len(arrays[0]), example_limit(task), seed)
    if len(keep) == len(arrays[0]):
        return arrays
    return tuple(np.asarray(a)[keep] for a in arrays)


def _get(mapping: dict, key: str):
    """A value from a dict whose keys may be str or bytes (Python-2 pickles)."""
    if key in mapping:
        return mapping[key]
    return mapping[key.encode()]


# ---------------------------------------------------------------- CIFAR-100
def _cifar_member(directory: Path, name: str) -> dict:
    for folder in (directory / "cifar-100-python", directory):
        if (folder / name).is_file():
            with open(folder / name, "rb") as handle:
                return restricted_load(handle, encoding="bytes")
    archive = directory / "cifar-100-python.tar.gz"
    if archive.is_file():
        with tarfile.open(archive, "r:gz") as tar:
            handle = tar.extractfile(f"cifar-100-python/{name}")
            if handle is not None:
                return restricted_load(handle, encoding="bytes")
    first_existing("cifar100", directory / "cifar-100-python" / name, directory / name, archive)
    raise AssertionError("unreachable")


def load_cifar100(directory: str | Path | None = None) -> RawTask:
    root = _directory("cifar100", directory)
    splits = {}
    for split in ("train", "test"):
        batch = _cifar_member(root, split)
        images = np.asarray(_get(batch, "data"), dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(_get(batch, "fine_labels"), dtype=np.int64)
        images, labels = _capped("cifar100", images, labels)
        scaled = images.astype(np.float32) / 255.0
        splits[split] = (
            (scaled - CIFAR100_MEAN[:, None, None]) / CIFAR100_STD[:, None, None],
            labels,
        )
    try:
        names = tuple(n.decode() for n in _get(_cifar_member(root, "meta"), "fine_label_names"))
    except (FileNotFoundError, KeyError):
        names = ()
    return RawTask(
        x_train=splits["train"][0],
        y_train=splits["train"][1],
        x_test=splits["test"][0],
        y_test=splits["test"][1],
        source=f"CIFAR-100 python version in {root}",
        version="cifar-100-python",
        label_names=names,
    )


# ---------------------------------------------------------------- Spherical CIFAR-100
def load_spherical(directory: str | Path | None = None) -> RawTask:
    root = _directory("spherical", directory)
    path = first_existing("spherical", root / "s2_cifar100.gz", root / "s2_cifar100")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        dataset = restricted_load(handle)
    arrays = []
    for split in ("train", "test"):
        images = np.asarray(_get(_get(dataset, split), "images"))
        labels = np.asarray(_get(_get(dataset, split), "labels"), dtype=np.int64)
        if images.ndim == 3:  # single-channel projections
            images = images[:, None]
        images, labels = _capped("spherical", images, labels)
        arrays += [images.astype(np.float32) / 255.0, labels]
    return RawTask(*arrays, source=str(path), version="NAS-Bench-360 s2_cifar100")


# ---------------------------------------------------------------- NinaPro DB5
def load_ninapro(directory: str | Path | None = None) -> RawTask:
    root = _directory("ninapro", directory)
    names = [
        f"{kind}_{split}.npy" for split in ("train", "val", "test") for kind in ("ninapro", "label")
    ]
    paths = require("ninapro", *(root / n for n in names))
    arrays = {}
    for index, split in enumerate(("train", "val", "test")):
        data_path, label_path = paths[2 * index], paths[2 * index + 1]
        x = np.asarray(read_npy(data_path), dtype=np.float32)  # (N, 52, 16)
        y = np.asarray(read_npy(label_path)).astype(np.int64).reshape(-1)
        x, y = _capped("ninapro", x, y)
        arrays[split] = (np.ascontiguousarray(x.transpose(0, 2, 1))[:, None], y)
    return RawTask(
        x_train=arrays["train"][0],
        y_train=arrays["train"][1],
        x_val=arrays["val"][0],
        y_val=arrays["val"][1],
        x_test=arrays["test"][0],
        y_test=arrays["test"][1],
        source=str(root),
        version="NAS-Bench-360 NinaPro DB5",
    )


# ---------------------------------------------------------------- ECG (PhysioNet 2017)
def ecg_windows(records: list[np.ndarray], labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cut each record into windows of 1000 at its class's stride -> (N, 1, 1000), (N,)."""
    windows, window_labels = [], []
    for record, label in zip(records, labels, strict=True):
        stride = ECG_STRIDES[int(label)]
        for start in range(0, len(record) - ECG_WINDOW, stride):
            windows.append(record[start : start + ECG_WINDOW])
            window_labels.append(label)
    x = np.asarray(windows, dtype=np.float32).reshape(-1, 1, ECG_WINDOW)
    return x, np.asarray(window_labels, dtype=np.int64)


def load_ecg(directory: str | Path | None = None, seed: int = 0) -> RawTask:
    root = _directory("ecg", directory)
    (path,) = require("ecg", root / "challenge2017.pkl")
    from sklearn.model_selection import train_test_split

    with open(path, "rb") as handle:
        content = restricted_load(handle)
    records = []
    for record in _get(content, "data"):
        record = np.asarray(record, dtype=np.float64).reshape(-1)
        records.append((record - record.mean()) / max(record.std(), 1e-12))
    index = {name: i for i, name in enumerate(ECG_CLASSES)}
    raw_labels = _get(content, "label")
    labels = np.array(
        [index[v.decode() if isinstance(v, bytes) else str(v)] for v in raw_labels], dtype=np.int64
    )
    ids = np.arange(len(records))
    train_ids, test_ids = train_test_split(ids, test_size=0.1, random_state=seed)
    try:  # stratified by rhythm class when every class can reach both parts
        train_ids, val_ids = train_test_split(
            train_ids, test_size=1 / 9, random_state=seed, stratify=labels[train_ids]
        )
    except ValueError:
        train_ids, val_ids = train_test_split(train_ids, test_size=1 / 9, random_state=seed)
    splits = []
    for chosen in (train_ids, val_ids, test_ids):
        x, y = ecg_windows([records[i] for i in chosen], labels[chosen])
        splits.append(_capped("ecg", x, y))
    (x_train, y_train), (x_val, y_val), (x_test, y_test) = splits
    return RawTask(
        x_train=x_train,
        y_train=y_train,
        x_val=x_val,
        y_val=y_val,
        x_test=x_test,
        y_test=y_test,
        source=str(path),
        version=f"PhysioNet/CinC 2017 via NAS-Bench-360; record split seed {seed}",
        label_names=ECG_CLASSES,
    )


# ---------------------------------------------------------------- Satellite
def load_satellite(directory: str | Path | None = None) -> RawTask:
    root = _directory("satellite", directory)
    paths = require("satellite", root / "satellite_train.npy", root / "satellite_test.npy")
    arrays = []
    for path in paths:
        content = read_npy(path)
        x = np.asarray(_get(content, "data"), dtype=np.float32)
        y = np.asarray(_get(content, "label")).astype(np.int64).reshape(-1) - 1
        x, y = _capped("satellite", x, y)
        arrays += [x.reshape(len(x), 1, -1), y]
    return RawTask(*arrays, source=str(root), version="NAS-Bench-360 satellite")


# ---------------------------------------------------------------- DeepSEA
def _sequence_first(x: np.ndarray) -> np.ndarray:
    """(N, 1000, 4) one-hot -> (N, 4, 1000) float32; (N, 4, L) is kept."""
    x = np.asarray(x)
    if x.shape[1] != 4 and x.shape[2] == 4:
        x = x.transpose(0, 2, 1)
    return np.ascontiguousarray(x, dtype=np.float32)


def load_deepsea(directory: str | Path | None = None) -> RawTask:
    """The whole npz member is read (npz cannot be memory-mapped); ORCA_DEEPSEA_MAX_EXAMPLES
    subsamples each split before the float conversion, bounding memory."""
    root = _directory("deepsea", directory)
    (path,) = require("deepsea", root / "deepsea_filtered.npz")
    arrays = {}
    with np.load(path, allow_pickle=False) as data:
        for split in ("train", "val", "test"):
            x, y = _capped("deepsea", data[f"x_{split}"], data[f"y_{split}"])
            arrays[split] = (_sequence_first(x), np.asarray(y, dtype=np.float32))
    return RawTask(
        x_train=arrays["train"][0],
        y_train=arrays["train"][1],
        x_val=arrays["val"][0],
        y_val=arrays["val"][1],
        x_test=arrays["test"][0],
        y_test=arrays["test"][1],
        source=str(path),
        version="NAS-Bench-360 deepsea_filtered",
    )
