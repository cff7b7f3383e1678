"""PDEBench tasks from its published HDF5 files: predict a later state from the initial one.

Layouts (PDEBench's data_gen output, as its loaders and ORCA's read them):

  1D scalar equations (Advection, Burgers, ...), e.g. 1D_Burgers_Sols_Nu1.0.hdf5:
      "tensor"        (N, T, X) float32, the solution u(t, x) of N trajectories
      "x-coordinate"  (X,), "t-coordinate" (T + 1,)
  2D Darcy flow, e.g. 2D_DarcyFlow_beta0.1_Train.hdf5:
      "nu"            (N, H, W) the diffusion coefficient a(x)
      "tensor"        (N, 1, H, W) the steady-state solution u(x)

Tasks: input u(t=0) -> target u at `time_index` (default the last stored step, the reference's
t_train clamped to the trajectory), both (N, 1, X) after keeping every `x_stride`-th point;
Darcy: a -> u, (N, 1, H, W) each after every `stride`-th point. As the reference
(UNetDatasetSingle, test_ratio 0.1), the first 10% of the file's samples are the test set and
the rest train; ingest carves validation from train. Values are not normalised. Only the two
needed time slices are read, so the multi-GB files are never loaded whole.
ORCA_<TASK>_MAX_EXAMPLES caps each split at a seeded random subset.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from orca.data.benchmarks import (
    benchmark_data_dir,
    example_limit,
    import_optional,
    require,
    subset,
)
from orca.data.tasks import RawTask

TEST_FRACTION = 0.1


def _split(task: str, x: np.ndarray, y: np.ndarray, source: str, version: str) -> RawTask:
    n_test = int(len(x) * TEST_FRACTION)
    limit = example_limit(task)
    train = n_test + subset(len(x) - n_test, limit)
    test = subset(n_test, limit)
    return RawTask(
        x_train=np.ascontiguousarray(x[train], dtype=np.float32),
        y_train=np.ascontiguousarray(y[train], dtype=np.float32),
        x_test=np.ascontiguousarray(x[test], dtype=np.float32),
        y_test=np.ascontiguousarray(y[test], dtype=np.float32),
        source=source,
        version=version,
    )


def _dataset(handle, key: str, path: Path, ndim: int):
    if key not in handle:
        raise ValueError(f"{path}: no dataset {key!r}; found {sorted(handle.keys())}")
    data = handle[key]
    if data.ndim != ndim:
        raise ValueError(f"{path}: {key!r} has shape {data.shape}, expected {ndim} dimensions")
    return data


def load_pdebench_1d(
    task: str,
    filename: str,
    directory: str | Path | None = None,
    time_index: int = -1,
    x_stride: int = 1,
) -> RawTask:
    """u(t=0, x) -> u(t=time_index, x) from a 1D PDEBench file: (N, 1, X) each."""
    h5py = import_optional("h5py", task)
    root = Path(directory).expanduser() if directory is not None else benchmark_data_dir(task)
    (path,) = require(task, root / filename)
    with h5py.File(path, "r") as handle:
        tensor = _dataset(handle, "tensor", path, 3)
        steps = tensor.shape[1]
        if not -steps <= time_index < steps:
            raise ValueError(f"{path}: time_index {time_index} outside the {steps} stored steps")
        t = time_index % steps
        initial = np.asarray(tensor[:, 0, ::x_stride])
        final = np.asarray(tensor[:, t, ::x_stride])
    return _split(
        task,
        initial[:, None],
        final[:, None],
        str(path),
        f"PDEBench {filename}: u(t0) -> u(t{t}), every {x_stride} x",
    )


def load_pdebench_darcy(
    task: str = "pdebench-darcy",
    filename: str = "2D_DarcyFlow_beta0.1_Train.hdf5",
    directory: str | Path | None = None,
    stride: int = 2,
) -> RawTask:
    """a(x) -> u(x) from a PDEBench 2D Darcy file: (N, 1, H, W) each."""
    h5py = import_optional("h5py", task)
    root = Path(directory).expanduser() if directory is not None else benchmark_data_dir(task)
    (path,) = require(task, root / filename)
    with h5py.File(path, "r") as handle:
        nu = np.asarray(_dataset(handle, "nu", path, 3)[:, ::stride, ::stride])
        solution = np.asarray(_dataset(handle, "tensor", path, 4)[:, 0, ::stride, ::stride])
    return _split(
        task, nu[:, None], solution[:, None], str(path), f"PDEBench {filename}, every {stride}"
    )
