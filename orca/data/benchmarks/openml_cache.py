"""An OpenML dataset read straight from the files of an `openml` cache folder, without the
`openml` package and without unpickling anything.

`openml.datasets.get_dataset` keeps pickle caches next to the downloaded files
(dataset.pkl.py3, features.xml.pkl) and loads them when they are there; a cache folder
that somebody else prepared could hold any pickle, and unpickling runs code. This reader
takes only the plain files:

    description.xml       name, version, default_target_attribute, row_id_attribute,
                          ignore_attribute (XML, read with the standard library)
    features.xml          per column: index, name, data_type, nominal_value (in declared
                          order), is_target, is_ignore, is_row_identifier
    dataset_<id>.pq       the data as parquet (pyarrow), or
    dataset.arff          the data as ARFF (liac-arff, the reader openml itself uses)

and returns what `OpenMLDataset.get_data(target=default, dataset_format="dataframe")`
returns: the feature columns (without the target, ignored and row-id columns) with nominal
ones as pandas categoricals in the declared category order, the target likewise, and per
column whether it is nominal. Values outside a nominal column's declared categories, and
ARFF's "?", are missing.
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path

NAMESPACE = "{http://openml.org/openml}"
NOMINAL = "nominal"


@dataclass(frozen=True)
class OpenMLFeature:
    index: int
    name: str
    data_type: str  # "numeric", "nominal", "string", "date"
    nominal_values: tuple[str, ...]
    is_target: bool
    is_ignore: bool
    is_row_identifier: bool


@dataclass(frozen=True)
class OpenMLDescription:
    dataset_id: int
    name: str
    version: str
    default_target_attribute: str | None
    ignore_attributes: tuple[str, ...]
    row_id_attribute: str | None


def _text(element, tag: str) -> str | None:
    found = element.find(NAMESPACE + tag)
    return found.text.strip() if found is not None and found.text is not None else None


def _parse(path: Path):
    try:
        return ElementTree.parse(path).getroot()
    except (ElementTree.ParseError, OSError) as err:
        raise ValueError(f"{path}: not a readable OpenML XML file ({err})") from err


def read_description(path: Path, dataset_id: int) -> OpenMLDescription:
    root = _parse(path)
    ignored = [
        e.text.strip() for e in root.findall(NAMESPACE + "ignore_attribute") if e.text
    ]  # each element may list several, comma-separated
    return OpenMLDescription(
        dataset_id=dataset_id,
        name=_text(root, "name") or f"openml-{dataset_id}",
        version=_text(root, "version") or "?",
        default_target_attribute=_text(root, "default_target_attribute"),
        ignore_attributes=tuple(n.strip() for item in ignored for n in item.split(",") if n),
        row_id_attribute=_text(root, "row_id_attribute"),
    )


def read_features(path: Path) -> list[OpenMLFeature]:
    features = []
    for element in _parse(path).findall(NAMESPACE + "feature"):
        name, index = _text(element, "name"), _text(element, "index")
        if name is None or index is None or not index.isdigit():
            raise ValueError(f"{path}: a feature without a name or an integer index")
        features.append(
            OpenMLFeature(
                index=int(index),
                name=name,
                data_type=_text(element, "data_type") or "numeric",
                nominal_values=tuple(
                    v.text for v in element.findall(NAMESPACE + "nominal_value") if v.text
                ),
                is_target=_text(element, "is_target") == "true",
                is_ignore=_text(element, "is_ignore") == "true",
                is_row_identifier=_text(element, "is_row_identifier") == "true",
            )
        )
    return sorted(features, key=lambda feature: feature.index)


def _read_table(folder: Path, dataset_id: int, use_arff: bool, names: list[str]):
    import pandas as pd

    if not use_arff:
        parquet = folder / f"dataset_{dataset_id}.pq"
        if not parquet.is_file():
            parquet = folder / "dataset.pq"
        import pyarrow.parquet as pq

        return pq.read_table(parquet).to_pandas()
    import arff  # liac-arff: plain text parsing

    with open(folder / "dataset.arff", encoding="utf8") as handle:
        decoded = arff.load(handle)
    columns = [name for name, _ in decoded["attributes"]]
    if len(columns) != len(names):
        raise ValueError(
            f"{folder / 'dataset.arff'}: {len(columns)} attributes, features.xml lists {len(names)}"
        )
    return pd.DataFrame(decoded["data"], columns=columns)


def _column(values, feature: OpenMLFeature):
    import pandas as pd

    if feature.data_type == NOMINAL:
        return pd.Categorical(values.astype("string"), categories=list(feature.nominal_values))
    if feature.data_type == "numeric":
        return pd.to_numeric(values, errors="coerce").astype("float64")
    return values


def read_openml_cache(folder: Path, dataset_id: int, use_arff: bool):
    """(description, x, y, nominal flags, feature names) from the cache `folder`; see the
    module docstring. Raises ValueError naming the file for malformed contents."""
    import pandas as pd

    description = read_description(folder / "description.xml", dataset_id)
    features = read_features(folder / "features.xml")
    table = _read_table(folder, dataset_id, use_arff, [f.name for f in features])
    missing = [f.name for f in features if f.name not in table.columns]
    if missing:
        raise ValueError(f"{folder}: the data file has no column(s) {missing[:5]}")
    target = description.default_target_attribute
    dropped = set(description.ignore_attributes) | {description.row_id_attribute}
    kept = [
        f
        for f in features
        if f.name != target and not (f.is_ignore or f.is_row_identifier) and f.name not in dropped
    ]
    x = pd.DataFrame({f.name: _column(table[f.name], f) for f in kept})
    y = None
    if target is not None:
        (target_feature,) = [f for f in features if f.name == target] or [None]
        if target_feature is None:
            raise ValueError(f"{folder / 'features.xml'}: no feature named the target {target!r}")
        y = pd.Series(_column(table[target], target_feature), name=target)
    return description, x, y, [f.data_type == NOMINAL for f in kept], [f.name for f in kept]
