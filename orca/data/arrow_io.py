"""Task splits as Arrow IPC files.

One file per split with two columns:

    x   fixed_shape_tensor<float32>[input_shape]       one example per row
    y   int64 (class id)  or  fixed_shape_tensor<float32>[target_shape]

The schema metadata key b"orca" holds JSON: the content fingerprint of (x, y) and provenance
(task, source, version, seed, split name and size). Files are written atomically and read
memory-mapped, so iterating a split in batches costs O(batch) memory.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from orca.atomic import atomic_path
from orca.fingerprint import fingerprint_arrays

METADATA_KEY = b"orca"
ROWS_PER_BATCH = 4096


class SplitFileError(ValueError):
    """A split file is missing, unreadable, or not an orca split."""


@dataclass(frozen=True)
class SplitData:
    x: np.ndarray  # (N, *input_shape) float32
    y: np.ndarray  # (N,) int64 or (N, *target_shape) float32
    metadata: dict[str, Any]


def _column(values: np.ndarray) -> pa.Array:
    if values.ndim == 1:
        return pa.array(values)
    return pa.FixedShapeTensorArray.from_numpy_ndarray(np.ascontiguousarray(values))


def write_split(path: str | Path, x: np.ndarray, y: np.ndarray, provenance: dict[str, Any]) -> str:
    """Write one split atomically; return its content fingerprint."""
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y)
    y = y.astype(np.int64) if y.ndim == 1 and np.issubdtype(y.dtype, np.integer) else y
    if y.dtype != np.int64:
        y = y.astype(np.float32)
    if len(x) != len(y):
        raise ValueError(f"{path}: x has {len(x)} rows but y has {len(y)}")
    if not np.isfinite(x).all():
        raise ValueError(f"{path}: inputs contain NaN or inf values")
    fingerprint = fingerprint_arrays(x, y)
    metadata = {
        **provenance,
        "fingerprint": fingerprint,
        "rows": len(x),
        "input_shape": list(x.shape[1:]),
        "target_shape": list(y.shape[1:]),
        "target_dtype": str(y.dtype),
    }
    table = pa.table({"x": _column(x), "y": _column(y)})
    table = table.replace_schema_metadata({METADATA_KEY: json.dumps(metadata).encode()})
    with (
        atomic_path(path) as tmp,
        pa.OSFile(str(tmp), "wb") as sink,
        pa.ipc.new_file(sink, table.schema) as writer,
    ):
        writer.write_table(table, max_chunksize=ROWS_PER_BATCH)
    return fingerprint


def read_metadata(path: str | Path) -> dict[str, Any]:
    with _open(path) as reader:
        return _metadata(path, reader.schema)


def read_split(path: str | Path) -> SplitData:
    """Read a whole split into memory (for small splits; use iter_batches for large ones)."""
    with _open(path) as reader:
        metadata = _metadata(path, reader.schema)
        table = reader.read_all()
    return SplitData(_to_numpy(table.column("x")), _to_numpy(table.column("y")), metadata)


def iter_batches(path: str | Path, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (x, y) batches of at most `batch_size` rows from a memory-mapped split."""
    with _open(path) as reader:
        for i in range(reader.num_record_batches):
            record_batch = reader.get_batch(i)
            for start in range(0, record_batch.num_rows, batch_size):
                chunk = record_batch.slice(start, batch_size)
                yield _to_numpy(chunk.column(0)), _to_numpy(chunk.column(1))


class _open:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __enter__(self) -> pa.ipc.RecordBatchFileReader:
        if not self.path.is_file():
            raise SplitFileError(f"{self.path}: split file does not exist")
        try:
            self._source = pa.memory_map(str(self.path), "r")
            return pa.ipc.open_file(self._source)
        except pa.ArrowInvalid as err:
            raise SplitFileError(f"{self.path}: not a readable Arrow IPC file ({err})") from err

    def __exit__(self, *exc: object) -> None:
        source = getattr(self, "_source", None)
        if source is not None:
            source.close()


def _metadata(path: str | Path, schema: pa.Schema) -> dict[str, Any]:
    raw = (schema.metadata or {}).get(METADATA_KEY)
    if raw is None:
        raise SplitFileError(f"{path}: Arrow file has no orca metadata; was it written by orca?")
    return json.loads(raw)


def _to_numpy(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Copy a column out of the memory map, so the array outlives the open file."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if isinstance(column.type, pa.FixedShapeTensorType):
        return np.array(column.to_numpy_ndarray(), copy=True)
    return np.array(column.to_numpy(zero_copy_only=False), copy=True)
