"""OpenML-CC18 tabular classification from a local `openml` cache folder, read as plain files.

The loader reads a dataset from the files an openml cache holds

    <root>/org/openml/www/datasets/<id>/description.xml   the dataset description
    <root>/org/openml/www/datasets/<id>/features.xml      feature names, types, nominal values
    <root>/org/openml/www/datasets/<id>/dataset_<id>.pq   the data as parquet (when the
                                                           description has oml:parquet_url),
                                        or dataset.arff   the data as ARFF

(<root>/org/openml/www is openml.config.get_cache_directory() for the public server.) Such a
cache is what `get_dataset(id, download_data=True, download_features_meta_data=True)` leaves
on a connected machine, e.g. under ~/.cache/openml; point ORCA_<TASK>_DIR or
$ORCA_DATA_DIR/openml at its root. The loader checks those files first and raises
FileNotFoundError naming them. It reads them itself (orca/data/benchmarks/openml_cache.py),
without the openml package: openml would also load its own pickle caches
(dataset.pkl.py3, features.xml.pkl) from that folder, and unpickling a file from a folder
somebody else prepared can run any code.

Encoding, after ORCA's reference (load_openml_dataset): rows without a label are dropped; a
stratified 90/10 train/test split with a fixed seed; numeric features are standardised with
the training mean and std (missing values become the mean, i.e. 0); nominal features keep
OpenML's declared category order, with one extra category for missing values only in columns
that have some; then orca.data.tabular.encode_tabular: (N, C, F_num + F_cat) with C the widest
category count. Labels are the target's category codes, int64.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from orca.data.benchmarks import (
    benchmark_data_dir,
    example_limit,
    import_optional,
    missing_files_error,
    require,
    subset,
)
from orca.data.benchmarks.openml_cache import read_openml_cache
from orca.data.tabular import encode_tabular
from orca.data.tasks import RawTask


def openml_dataset_dir(root: Path, dataset_id: int) -> Path:
    """The cache folder of `dataset_id` under an openml root cache directory `root` (the
    layout openml uses for the public server, openml.org)."""
    return Path(root) / "org" / "openml" / "www" / "datasets" / str(dataset_id)


def _check_cache(task: str, folder: Path, dataset_id: int) -> bool:
    """Raise FileNotFoundError unless the cache can serve the dataset offline; return whether
    the ARFF file must be used (so openml is told to skip the parquet download)."""
    description, _ = require(task, folder / "description.xml", folder / "features.xml")
    parquet = folder / f"dataset_{dataset_id}.pq"
    arff = folder / "dataset.arff"
    wants_parquet = "oml:parquet_url" in description.read_text(encoding="utf8")
    if wants_parquet and (parquet.is_file() or (folder / "dataset.pq").is_file()):
        return False
    if arff.is_file():
        return True
    raise missing_files_error(task, [parquet, arff] if wants_parquet else [arff])


def _codes(column) -> tuple[np.ndarray, int]:
    """Integer codes of a nominal column (declared order) and its category count; a missing
    value gets an extra category, added only when the column has one."""
    import pandas as pd

    if isinstance(column.dtype, pd.CategoricalDtype):
        codes = column.cat.codes.to_numpy().astype(np.int64)
        count = len(column.cat.categories)
    else:
        codes, uniques = pd.factorize(column, sort=True)
        codes, count = codes.astype(np.int64), len(uniques)
    if (codes < 0).any():
        codes[codes < 0] = count
        count += 1
    return codes, count


def load_openml(
    dataset_id: int,
    task: str | None = None,
    cache_dir: str | Path | None = None,
    test_fraction: float = 0.1,
    seed: int = 0,
) -> RawTask:
    import pandas as pd
    from sklearn.model_selection import train_test_split

    task = task or f"openml-{dataset_id}"
    root = Path(cache_dir).expanduser() if cache_dir is not None else benchmark_data_dir(task)
    folder = openml_dataset_dir(root, dataset_id)
    use_arff = _check_cache(task, folder, dataset_id)
    if use_arff:
        import_optional("arff", task, "liac-arff")
    dataset, x, y, categorical, names = read_openml_cache(folder, dataset_id, use_arff)

    if y is None or not len(y):
        raise ValueError(f"OpenML dataset {dataset_id} has no default target attribute")
    labelled = y.notna().to_numpy()
    x, y = x.loc[labelled].reset_index(drop=True), y.loc[labelled].reset_index(drop=True)
    y_codes, _ = _codes(y if isinstance(y.dtype, pd.CategoricalDtype) else y.astype(str))
    label_names = tuple(
        str(c)
        for c in (
            y.cat.categories
            if isinstance(y.dtype, pd.CategoricalDtype)
            else sorted(set(y.astype(str)))
        )
    )
    nominal = [
        n
        for n, is_cat in zip(names, categorical, strict=True)
        if is_cat or not pd.api.types.is_numeric_dtype(x[n])
    ]
    numeric_names = [n for n in names if n not in nominal]
    codes, counts = [], []
    for name in nominal:
        column_codes, count = _codes(x[name])
        codes.append(column_codes)
        counts.append(count)
    all_codes = np.stack(codes, axis=1) if codes else np.zeros((len(x), 0), np.int64)
    numeric = (
        x[numeric_names].to_numpy(dtype=np.float64) if numeric_names else np.zeros((len(x), 0))
    )

    rows = np.arange(len(y_codes))
    train, test = train_test_split(
        rows, test_size=test_fraction, random_state=seed, stratify=y_codes
    )
    train, test = np.sort(train), np.sort(test)
    limit = example_limit(task)
    train, test = train[subset(len(train), limit, seed)], test[subset(len(test), limit, seed)]
    mean = np.nanmean(numeric[train], axis=0) if numeric.shape[1] else np.zeros(0)
    std = np.nanstd(numeric[train], axis=0) if numeric.shape[1] else np.zeros(0)
    mean, std = np.nan_to_num(mean), np.where(np.nan_to_num(std) > 0, np.nan_to_num(std), 1.0)
    standardised = np.nan_to_num((numeric - mean) / std)

    def encode(chosen: np.ndarray) -> np.ndarray:
        return encode_tabular(standardised[chosen], all_codes[chosen], counts)

    return RawTask(
        x_train=encode(train),
        y_train=y_codes[train],
        x_test=encode(test),
        y_test=y_codes[test],
        source=f"OpenML dataset {dataset_id} ({dataset.name}) from the cache at {root}",
        version=(
            f"openml {dataset_id} v{dataset.version}; stratified test {test_fraction}, seed {seed}"
        ),
        label_names=label_names,
    )
