"""NAS-Bench-360 dense-prediction tasks: Darcy Flow, PSICOV and Cosmic, from published files.

  nb360-darcy  piececonst_r421_N1024_smooth{1,2}.mat (the FNO Darcy data): fields "coeff" and
               "sol", (1024, 421, 421); MATLAB v5 files are read with scipy.io.loadmat, v7.3
               (HDF5, axes stored reversed) with h5py. As the reference: every 5th grid point
               (85 x 85), the first 1000 examples of smooth1 for training (the last 100 of them
               our validation split, as its valid_split), the first 100 of smooth2 for test;
               the coefficient is normalised pointwise with the training mean/std and two
               channels of (x, y) grid coordinates in [0, 1] are appended. -> (N, 3, 85, 85);
               the target is the raw solution (N, 1, 85, 85), so relative L2 is the paper's.
  psicov       protein.zip: deepcov.lst (training ids) and psicov.lst (test ids); per id a
               features pickle {seq, ss (3, L), pssm (L, 22), sa (L,), entropy (L,),
               ccmpred (L, L), freecon (L, L), potential (L, L)} -> 57 pair channels in the
               reference's order, and a distance file <id>-cb.npy = np.save((L, seq, (L, L)
               C-beta distances)). Maps are zero-padded by 5 residues each side (targets by
               the distance cap) and cut into `window` x `window` crops: one seeded random
               crop per training protein, tiles covering the whole map for test proteins.
               Distances are clipped to [1, max_distance] (16 A, the reference's training
               label cap; missing distances count as the cap). Each crop or tile keeps its
               context: the protein (index in its split), the residue index of its first
               row and column (negative in the padding) and the protein's length, from which
               "psicov_mae8" reassembles whole maps.
  cosmic       deepCR ACS-WFC data as NAS-Bench-360 prepares it: train_dirs.npy/test_dirs.npy
               list per-exposure .npy files (image, cosmic-ray mask[, ignore mask]) with
               paths relative to the cosmic directory's parent ("./cosmic/npy_train/...").
               The reference's fixed 128 x 128 crop at (64, 64). -> (N, 1, 128, 128) image and
               (N, 1, 128, 128) 0/1 mask; the ignore mask (a file's third plane, zeros when it
               has two) is kept as context "ignore" of the same shape. Not reproduced: the
               random sky-background augmentation, and the ignore mask in the training loss
               (the authors multiply output and target by 1 - ignore there too).

Metrics (see orca.data.benchmark_tasks and orca.metrics_context): the paper's are
"psicov_mae8" and "cosmic_one_minus_auroc" (the tasks' defaults), computed with the
context the loaders keep (RawTask.context, which ingest carries into the split files);
orca's earlier per-tile numbers are "mae8" and "one_minus_auroc_pixelwise".
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from orca.data.benchmarks import (
    benchmark_data_dir,
    example_limit,
    import_optional,
    missing_files_error,
    read_npy,
    require,
    restricted_load,
    subset,
)
from orca.data.tasks import RawTask

DARCY_TRAIN = "piececonst_r421_N1024_smooth1.mat"
DARCY_TEST = "piececonst_r421_N1024_smooth2.mat"
PSICOV_CHANNELS = 57
PSICOV_PAD = 10


def _directory(task: str, directory: str | Path | None) -> Path:
    return Path(directory).expanduser() if directory is not None else benchmark_data_dir(task)


# ---------------------------------------------------------------- Darcy Flow
def read_mat_fields(
    path: Path, fields: tuple[str, ...], rows: int, step: int, task: str = "nb360-darcy"
) -> dict[str, np.ndarray]:
    """The first `rows` examples of each (N, H, W) field, every `step`-th grid point."""
    try:
        import h5py
    except ImportError:
        h5py = None
    if h5py is not None and h5py.is_hdf5(path):  # MATLAB v7.3: axes stored in reverse order
        with h5py.File(path, "r") as handle:
            return {
                f: np.asarray(handle[f][::step, ::step, :rows]).transpose(2, 1, 0) for f in fields
            }
    scipy_io = import_optional("scipy.io", task, "scipy")
    try:
        content = scipy_io.loadmat(path, variable_names=list(fields))
    except NotImplementedError as err:  # a v7.3 file and no h5py
        raise RuntimeError(f"{path} is a MATLAB v7.3 file: pip install h5py to read it") from err
    missing = [f for f in fields if f not in content]
    if missing:
        raise ValueError(f"{path}: no field(s) {missing}; found {sorted(content)}")
    return {f: np.asarray(content[f])[:rows, ::step, ::step] for f in fields}


def load_darcy(directory: str | Path | None = None, step: int = 5, n_train: int = 1000) -> RawTask:
    root = _directory("nb360-darcy", directory)
    train_path, test_path = require("nb360-darcy", root / DARCY_TRAIN, root / DARCY_TEST)
    train = read_mat_fields(train_path, ("coeff", "sol"), n_train, step)
    test = read_mat_fields(test_path, ("coeff", "sol"), 100, step)
    n = len(train["coeff"])
    n_val = max(1, n // 10)
    x_all, y_all = train["coeff"].astype(np.float64), train["sol"].astype(np.float32)
    mean = x_all[: n - n_val].mean(axis=0)
    std = x_all[: n - n_val].std(axis=0, ddof=1) if n - n_val > 1 else np.zeros_like(mean)

    def inputs(coeff: np.ndarray) -> np.ndarray:
        size = coeff.shape[-1]
        grid = np.linspace(0.0, 1.0, size)
        across, down = np.meshgrid(grid, grid)  # across varies along width, down along height
        normalised = (coeff - mean) / (std + 1e-5)
        channels = [normalised, *(np.broadcast_to(g, coeff.shape) for g in (across, down))]
        return np.stack(channels, axis=1).astype(np.float32)

    x_test, y_test = test["coeff"].astype(np.float64), test["sol"].astype(np.float32)
    return RawTask(
        x_train=inputs(x_all[: n - n_val]),
        y_train=y_all[: n - n_val, None],
        x_val=inputs(x_all[n - n_val :]),
        y_val=y_all[n - n_val :, None],
        x_test=inputs(x_test),
        y_test=y_test[:, None],
        source=str(root),
        version=f"FNO piececonst r421 N1024, every {step}th point",
    )


# ---------------------------------------------------------------- PSICOV
def _read_ids(path: Path) -> list[str]:
    with open(path) as handle:
        return [line.split()[0] for line in handle if line.strip()]


def psicov_features(features: dict) -> np.ndarray:
    """A features pickle -> (57, L, L) float32 pair features in the reference's channel order.

    Each per-residue vector v gives two channels: v along the columns (X[i, k] = v[k]) then
    along the rows (X[i, k] = v[i]); the three (L, L) maps follow as they are.
    """
    length = len(features["seq"])
    vectors = [np.asarray(features["ss"], dtype=np.float32)[j] for j in range(3)]
    pssm = np.asarray(features["pssm"], dtype=np.float32)
    vectors += [pssm[:, j] for j in range(pssm.shape[1])]
    vectors += [
        np.asarray(features[k], dtype=np.float32).reshape(length) for k in ("sa", "entropy")
    ]
    channels = []
    for v in vectors:
        channels += [
            np.broadcast_to(v[None, :], (length, length)),
            np.broadcast_to(v[:, None], (length, length)),
        ]
    channels += [
        np.asarray(features[k], dtype=np.float32) for k in ("ccmpred", "freecon", "potential")
    ]
    if len(channels) != PSICOV_CHANNELS:
        raise ValueError(
            f"expected {PSICOV_CHANNELS} PSICOV feature channels, built {len(channels)}"
        )
    return np.nan_to_num(np.stack(channels))


def psicov_distances(cb_map: np.ndarray, max_distance: float) -> np.ndarray:
    """C-beta distances clipped to [1, max_distance]; the diagonal takes its neighbours' mean."""
    y = np.array(cb_map, dtype=np.float64)
    length = len(y)
    if length > 1:
        left = np.r_[np.nan, np.diagonal(y, -1)]
        right = np.r_[np.diagonal(y, 1), np.nan]
        with np.errstate(invalid="ignore"):
            y[np.arange(length), np.arange(length)] = np.nanmean(np.stack([left, right]), axis=0)
    y = np.nan_to_num(y, nan=max_distance)
    return np.clip(y, 1.0, max_distance).astype(np.float32)


def _window_starts(size: int, window: int) -> list[int]:
    if size <= window:
        return [0]
    return [*range(0, size - window, window), size - window]


def _psicov_examples(
    task: str,
    root: Path,
    dataset: str,
    ids: list[str],
    window: int,
    max_distance: float,
    rng: np.random.Generator | None,
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Crops (rng given: one random crop each) or tiles (rng None) of each protein's maps,
    and their context (protein index, first row and column as residue indices, length)."""
    searched = [dataset, *(d for d in ("deepcov", "psicov", "cameo") if d != dataset)]
    xs, ys = [], []
    context: dict[str, list[int]] = {"protein": [], "row_start": [], "col_start": [], "length": []}
    for index, pdb in enumerate(ids):
        feature_paths = [root / d / "features" / f"{pdb}.pkl" for d in searched]
        distance_paths = [root / d / "distance" / f"{pdb}-cb.npy" for d in searched]
        feature_path = next((p for p in feature_paths if p.is_file()), None)
        distance_path = next((p for p in distance_paths if p.is_file()), None)
        if feature_path is None or distance_path is None:
            raise missing_files_error(task, [feature_paths[0], distance_paths[0]])
        with open(feature_path, "rb") as handle:
            x = psicov_features(restricted_load(handle))
        _, _, cb_map = list(read_npy(distance_path))
        y = psicov_distances(cb_map, max_distance)
        length = x.shape[-1]
        size = length + PSICOV_PAD
        half = PSICOV_PAD // 2
        padded_x = np.zeros((PSICOV_CHANNELS, max(size, window), max(size, window)), np.float32)
        padded_y = np.full((1, max(size, window), max(size, window)), max_distance, np.float32)
        padded_x[:, half : half + length, half : half + length] = x
        padded_y[0, half : half + len(y), half : half + len(y)] = y
        if rng is not None and size > window:
            rows = [int(rng.integers(0, size - window + 1))]
            cols = [int(rng.integers(0, size - window + 1))]
        else:
            rows = cols = _window_starts(size, window)
        for r in rows:
            for c in cols:
                xs.append(padded_x[:, r : r + window, c : c + window])
                ys.append(padded_y[:, r : r + window, c : c + window])
                for key, value in zip(context, (index, r - half, c - half, length), strict=True):
                    context[key].append(value)
    return np.stack(xs), np.stack(ys), {k: np.asarray(v, np.int64) for k, v in context.items()}


def load_psicov(
    directory: str | Path | None = None,
    window: int = 128,
    max_distance: float = 16.0,
    seed: int = 0,
) -> RawTask:
    """DeepCov proteins for training, PSICOV's 150 for test. Memory: each example is
    57 x window^2 float32 (3.7 MB at 128); cap with ORCA_PSICOV_MAX_EXAMPLES (proteins)."""
    task = "psicov"
    root = _directory(task, directory)
    train_list, test_list = require(task, root / "deepcov.lst", root / "psicov.lst")
    limit = example_limit(task)
    train_ids = _read_ids(train_list)
    train_ids = [train_ids[k] for k in subset(len(train_ids), limit, seed)]
    test_ids = _read_ids(test_list)
    test_ids = [test_ids[k] for k in subset(len(test_ids), limit, seed)]
    rng = np.random.default_rng(seed)
    train = _psicov_examples(task, root, "deepcov", train_ids, window, max_distance, rng)
    test = _psicov_examples(task, root, "psicov", test_ids, window, max_distance, None)
    return RawTask(
        x_train=train[0],
        y_train=train[1],
        x_test=test[0],
        y_test=test[1],
        source=str(root),
        version=f"DeepCov/PSICOV via NAS-Bench-360; window {window}, cap {max_distance} A",
        context={"train": train[2], "test": test[2]},
    )


# ---------------------------------------------------------------- Cosmic
def _cosmic_file(root: Path, listed: str) -> Path:
    path = Path(listed)
    if path.is_absolute():
        return path
    relative = Path(*[p for p in path.parts if p != "."])
    candidates = [root.parent / relative, root / relative]
    if relative.parts and relative.parts[0] == "cosmic":
        candidates.append(root / Path(*relative.parts[1:]))
    return next((c for c in candidates if c.is_file()), candidates[0])


def load_cosmic(
    directory: str | Path | None = None, crop: int = 128, offset: int = 64, seed: int = 0
) -> RawTask:
    task = "cosmic"
    root = _directory(task, directory)
    lists = require(task, root / "train_dirs.npy", root / "test_dirs.npy")
    arrays, ignored = [], []
    for list_path in lists:
        listed = [str(p) for p in np.asarray(read_npy(list_path)).reshape(-1)]
        listed = [listed[k] for k in subset(len(listed), example_limit(task), seed)]
        files = [_cosmic_file(root, p) for p in listed]
        missing = [f for f in files if not f.is_file()]
        if missing:
            raise missing_files_error(task, missing[:5]) from None
        images, masks, ignores = [], [], []
        for path in files:
            stack = np.asarray(read_npy(path, mmap=True))
            window = stack[:3, offset : offset + crop, offset : offset + crop]
            if window.shape[1:] != (crop, crop) or len(window) < 2:
                raise ValueError(
                    f"{path}: a {stack.shape} stack; expected (2 or 3, H, W) planes (image, "
                    f"cosmic-ray mask[, ignore mask]) large enough for a {crop} crop at {offset}"
                )
            images.append(window[0])
            masks.append(window[1])
            ignores.append(window[2] if len(window) > 2 else np.zeros_like(window[0]))
        arrays += [
            np.asarray(images, dtype=np.float32)[:, None],
            (np.asarray(masks, dtype=np.float32)[:, None] > 0).astype(np.float32),
        ]
        ignored.append((np.asarray(ignores)[:, None] > 0).astype(np.uint8))
    return RawTask(
        *arrays,
        source=str(root),
        version="deepCR ACS-WFC (f435w, GAL) via NAS-Bench-360",
        context={"train": {"ignore": ignored[0]}, "test": {"ignore": ignored[1]}},
    )
