"""Published benchmarks read from local files: where each task's files live, and safe readers.

Every benchmark task reads its files from one directory, found in this order:

    $ORCA_<TASK>_DIR              e.g. ORCA_ECG_DIR, ORCA_NB360_DARCY_DIR, ORCA_OPENML_KC1_DIR
    $ORCA_DATA_DIR/<subdir>       ORCA_DATA_DIR defaults to ~/.cache/orca/data

<TASK> is the task name upper-cased with every other character than a letter or digit turned
into "_". The CLI's `--data-dir` maps to ORCA_DATA_DIR. Nothing is downloaded: when a file is
missing the loader raises FileNotFoundError naming each path it expected and the variables
that move it. The files each task expects (paths relative to its directory):

    task              subdir      files
    cifar100          cifar100    cifar-100-python/{train,test,meta} (the extracted
                                  cifar-100-python.tar.gz), or that .tar.gz itself
    spherical         spherical   s2_cifar100.gz (gzip pickle) or s2_cifar100 (gunzipped)
    ninapro           ninapro     ninapro_{train,val,test}.npy, label_{train,val,test}.npy
    fsd50k            fsd50k      chunks/{tr,val,eval}.csv, chunks/lbl_map.json and the 1-s
                                  22,050 Hz WAV chunks they list (relative to the directory)
    nb360-darcy       darcyflow   piececonst_r421_N1024_smooth1.mat (train/validation),
                                  piececonst_r421_N1024_smooth2.mat (test)
    psicov            protein     deepcov.lst, psicov.lst, {deepcov,psicov}/features/<id>.pkl,
                                  {deepcov,psicov}/distance/<id>-cb.npy
    cosmic            cosmic      train_dirs.npy, test_dirs.npy and the .npy images they list
    ecg               ecg         challenge2017.pkl
    satellite         satellite   satellite_train.npy, satellite_test.npy
    deepsea           deepsea     deepsea_filtered.npz
    pdebench-burgers  pdebench    1D_Burgers_Sols_Nu1.0.hdf5
    pdebench-advection pdebench   1D_Advection_Sols_beta0.4.hdf5
    pdebench-darcy    pdebench    2D_DarcyFlow_beta0.1_Train.hdf5
    openml-<name>     openml      an openml root cache: org/openml/www/datasets/<id>/
                                  {description.xml, features.xml, dataset_<id>.pq or
                                  dataset.arff}

Pickled files are read only through `restricted_load`, which rebuilds numpy arrays and plain
containers and refuses every other global, so a data file cannot run code.
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from orca.data.local_files import data_root, restricted_load


@dataclass(frozen=True)
class BenchmarkLayout:
    """Where a task's files live under ORCA_DATA_DIR and what they are."""

    subdir: str
    files: str
    source: str


_PDE = "PDEBench's data release (github.com/pdebench/PDEBench, 'Data Download')"
_S3 = "https://pde-xd.s3.amazonaws.com/"  # NAS-Bench-360's downloads
LAYOUTS: dict[str, BenchmarkLayout] = {
    "cifar100": BenchmarkLayout(
        "cifar100",
        "cifar-100-python/{train,test} or cifar-100-python.tar.gz",
        "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
    ),
    "spherical": BenchmarkLayout(
        "spherical", "s2_cifar100.gz or s2_cifar100", f"{_S3}spherical/s2_cifar100.gz"
    ),
    "ninapro": BenchmarkLayout(
        "ninapro",
        "ninapro_{train,val,test}.npy and label_{train,val,test}.npy",
        f"{_S3}ninapro/<file>",
    ),
    "fsd50k": BenchmarkLayout(
        "fsd50k",
        "chunks/{tr,val,eval}.csv, chunks/lbl_map.json and the WAV chunks they list",
        f"{_S3}audio/audio.zip",
    ),
    "nb360-darcy": BenchmarkLayout(
        "darcyflow",
        "piececonst_r421_N1024_smooth1.mat and piececonst_r421_N1024_smooth2.mat",
        f"{_S3}piececonst_r421_N1024_smooth{{1,2}}.mat",
    ),
    "psicov": BenchmarkLayout(
        "protein",
        "deepcov.lst, psicov.lst, {deepcov,psicov}/{features/<id>.pkl,distance/<id>-cb.npy}",
        f"{_S3}protein.zip",
    ),
    "cosmic": BenchmarkLayout(
        "cosmic",
        "train_dirs.npy, test_dirs.npy and the .npy files they list",
        f"{_S3}cosmic/deepCR.ACS-WFC.{{train,test}}.tar, listed by ORCA's preprocess_cosmic.py",
    ),
    "ecg": BenchmarkLayout("ecg", "challenge2017.pkl", f"{_S3}ECG/challenge2017.pkl"),
    "satellite": BenchmarkLayout(
        "satellite", "satellite_{train,test}.npy", f"{_S3}satellite/satellite_{{train,test}}.npy"
    ),
    "deepsea": BenchmarkLayout(
        "deepsea", "deepsea_filtered.npz", f"{_S3}deepsea/deepsea_filtered.npz"
    ),
    "pdebench-burgers": BenchmarkLayout("pdebench", "1D_Burgers_Sols_Nu1.0.hdf5", _PDE),
    "pdebench-advection": BenchmarkLayout("pdebench", "1D_Advection_Sols_beta0.4.hdf5", _PDE),
    "pdebench-darcy": BenchmarkLayout("pdebench", "2D_DarcyFlow_beta0.1_Train.hdf5", _PDE),
}
# OpenML-CC18 tasks share one openml cache directory.
OPENML_LAYOUT = BenchmarkLayout(
    "openml",
    "org/openml/www/datasets/<id>/{description.xml,features.xml,dataset_<id>.pq|dataset.arff}",
    "openml.datasets.get_dataset(<id>, download_data=True, "
    "download_features_meta_data=True) on a connected machine",
)


def layout(task: str) -> BenchmarkLayout:
    if task in LAYOUTS:
        return LAYOUTS[task]
    if task.startswith("openml-"):
        return OPENML_LAYOUT
    raise ValueError(f"no benchmark files are known for task {task!r}; known: {sorted(LAYOUTS)}")


def task_env_var(task: str, suffix: str = "DIR") -> str:
    """ORCA_<TASK>_<SUFFIX>: "nb360-darcy" -> "ORCA_NB360_DARCY_DIR"."""
    return f"ORCA_{re.sub(r'[^A-Z0-9]', '_', task.upper())}_{suffix}"


def benchmark_data_dir(task: str) -> Path:
    """The directory holding `task`'s files: $ORCA_<TASK>_DIR, else $ORCA_DATA_DIR/<subdir>."""
    explicit = os.environ.get(task_env_var(task))
    if explicit:
        return Path(explicit).expanduser()
    return data_root() / layout(task).subdir


def example_limit(task: str) -> int | None:
    """$ORCA_<TASK>_MAX_EXAMPLES: cap each split at this many examples (a seeded subset)."""
    value = os.environ.get(task_env_var(task, "MAX_EXAMPLES"))
    if not value:
        return None
    try:
        limit = int(value)
    except ValueError:
        limit = 0
    if limit < 1:
        raise ValueError(
            f"{task_env_var(task, 'MAX_EXAMPLES')}={value!r}: expected an integer >= 1"
        )
    return limit


def missing_files_error(task: str, paths: Iterable[Path]) -> FileNotFoundError:
    paths = [str(p) for p in paths]
    spec = layout(task)
    return FileNotFoundError(
        f"task {task!r}: missing file(s): {', '.join(paths)}. The task's directory should "
        f"hold {spec.files} (from {spec.source}). Put them there, or point "
        f"{task_env_var(task)} at the task's directory, or ORCA_DATA_DIR (--data-dir) at a "
        f"folder with a '{spec.subdir}' subfolder."
    )


def require(task: str, *paths: Path) -> tuple[Path, ...]:
    """Return `paths` if they are all files; else raise FileNotFoundError naming the missing."""
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise missing_files_error(task, missing)
    return paths


def first_existing(task: str, *candidates: Path) -> Path:
    """The first of `candidates` that is a file; else FileNotFoundError naming them all."""
    for path in candidates:
        if path.is_file():
            return path
    raise missing_files_error(task, candidates)


def import_optional(module: str, task: str, package: str | None = None) -> ModuleType:
    """Import an optional reader package, or explain which task needs it and how to install."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        package = package or module
        raise RuntimeError(
            f"task {task!r} needs the {package!r} package to read its files: "
            f"pip install {package}  (or: pip install 'orca-xmodal[benchmarks]')"
        ) from err


def subset(n: int, limit: int | None, seed: int = 0) -> np.ndarray:
    """Indices of a seeded random subset of size min(n, limit), in increasing order."""
    if limit is None or limit >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))


def read_npy(path: Path, mmap: bool = False) -> Any:
    """Read a .npy file. Object arrays (np.save of lists, tuples, dicts) are unpickled with
    `restricted_load`; numeric arrays are memory-mapped when `mmap` is set.

    A 0-d object array is returned as the object it holds (np.save of a dict -> the dict).
    """
    with open(path, "rb") as handle:
        version = np.lib.format.read_magic(handle)
        if version == (1, 0):
            header = np.lib.format.read_array_header_1_0(handle)
        else:
            header = np.lib.format.read_array_header_2_0(handle)
        dtype = header[2]
        if dtype.hasobject:
            array = restricted_load(handle)
            if isinstance(array, np.ndarray) and array.shape == () and array.dtype.hasobject:
                return array.item()
            return array
    return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
