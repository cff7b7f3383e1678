"""Task splits as Arrow IPC files.

One file per split with two columns, and one more per context field when the task has
per-example context (orca.metrics_context):

    x                fixed_shape_tensor<float32>[input_shape]     one example per row
    y                int64 (class id)  or  fixed_shape_tensor<float32>[target_shape]
    context.<name>   int64 (an index field: protein, clip, ...)  or
                     fixed_shape_tensor<uint8>[mask_shape] (a mask field: Cosmic's ignore)

The schema metadata key b"orca" holds JSON: the content fingerprint and provenance (task,
source, version, seed, split name and size; "context": the field names, when there are
any). The fingerprint hashes (x, y) and, only when a split has context, its context
columns, so splits without context keep the fingerprints (and the stage cache keys) they
had before context existed. Files are written atomically and read memory-mapped, so
iterating a split in batches costs O(batch) memory (the context arrays, one small row per
example, are held whole).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from orca.atomic import atomic_path
from orca.fingerprint import DIGEST_CHARS
from orca.metrics_context import check_context

METADATA_KEY = b"orca"
CONTEXT_PREFIX = "context."  # a context field's column: CONTEXT_PREFIX + its name
ROWS_PER_BATCH = 4096  # at most this many rows per Arrow record batch ...
BYTES_PER_BATCH = 16 << 20  # ... and at most about this many bytes of inputs


def rows_per_chunk(row_bytes: int) -> int:
    """Rows per record batch for rows of `row_bytes` bytes: bounded in rows and bytes."""
    return max(1, min(ROWS_PER_BATCH, BYTES_PER_BATCH // max(row_bytes, 1)))


class SplitFileError(ValueError):
    """A split file is missing, unreadable, or not an orca split."""


@dataclass(frozen=True)
class SplitData:
    x: np.ndarray  # (N, *input_shape) float32
    y: np.ndarray  # (N,) int64 or (N, *target_shape) float32
    metadata: dict[str, Any]
    # field -> (N,) int64 or (N, ...) uint8, aligned with x and y; empty for most tasks
    context: dict[str, np.ndarray] = field(default_factory=dict)


def _column(values: np.ndarray) -> pa.Array:
    if values.ndim == 1:
        return pa.array(values)
    return pa.FixedShapeTensorArray.from_numpy_ndarray(np.ascontiguousarray(values))


def _normalise(path: str | Path, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float32 inputs; int64 class ids or float32 targets; equal lengths, finite inputs."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    y = np.asarray(y)
    y = y.astype(np.int64) if y.ndim == 1 and np.issubdtype(y.dtype, np.integer) else y
    if y.dtype != np.int64:
        y = y.astype(np.float32)
    if len(x) != len(y):
        raise ValueError(f"{path}: x has {len(x)} rows but y has {len(y)}")
    if not np.isfinite(x).all():
        raise ValueError(f"{path}: inputs contain NaN or inf values")
    return x, np.ascontiguousarray(y)


class _Chunks:
    """Re-chunk a stream of (x, y) batches into rows_per_chunk(row bytes) pieces, so the
    fingerprint and the file layout do not depend on how the caller batched the data."""

    def __init__(self, path: str | Path, batches: Iterable[tuple[np.ndarray, np.ndarray]]):
        self.path, self.batches = path, batches

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        pending_x: list[np.ndarray] = []
        pending_y: list[np.ndarray] = []
        pending, shapes = 0, None
        for x, y in self.batches:
            x, y = _normalise(self.path, x, y)
            row_shapes = (x.shape[1:], y.shape[1:], y.dtype.str)
            if shapes is not None and row_shapes != shapes:
                raise ValueError(f"{self.path}: batch row shapes {row_shapes} differ from {shapes}")
            shapes = row_shapes
            chunk = rows_per_chunk(x[:1].nbytes + y[:1].nbytes)
            pending_x.append(x)
            pending_y.append(y)
            pending += len(x)
            while pending >= chunk:
                x_all, y_all = np.concatenate(pending_x), np.concatenate(pending_y)
                yield x_all[:chunk], y_all[:chunk]
                pending_x, pending_y = [x_all[chunk:]], [y_all[chunk:]]
                pending -= chunk
        if pending:
            yield np.concatenate(pending_x), np.concatenate(pending_y)


def write_split(
    path: str | Path,
    x: np.ndarray,
    y: np.ndarray,
    provenance: dict[str, Any],
    context: Mapping[str, np.ndarray] | None = None,
) -> str:
    """Write one in-memory split atomically (with its per-example `context`, field ->
    one row per example); return its content fingerprint."""
    return write_split_batches(path, lambda: [(x, y)], provenance, context)


def _context_digest(digest: Any, context: dict[str, np.ndarray]) -> None:
    """Add the context columns to a split's hash: names, row shapes, dtypes, bytes."""
    for name in sorted(context):
        values = np.ascontiguousarray(context[name])
        digest.update(repr((CONTEXT_PREFIX + name, values.shape[1:], values.dtype.str)).encode())
        digest.update(values.tobytes())


def write_split_batches(
    path: str | Path,
    make_batches: Callable[[], Iterable[tuple[np.ndarray, np.ndarray]]],
    provenance: dict[str, Any],
    context: Mapping[str, np.ndarray] | None = None,
) -> str:
    """Write a split from a re-iterable stream of (x, y) batches in O(batch) memory.

    `make_batches()` is called twice: once to fingerprint and count the rows (the schema,
    which carries them, is written before the first batch), once to write. The file
    appears at `path` only when complete. Returns the content fingerprint: a hash of the
    row shapes, dtypes and bytes, independent of how the caller batched the rows.

    `context` (field -> array, one row per example of the whole split, held in memory) is
    checked (orca.metrics_context.check_context) and written as `context.<name>` columns
    beside the rows they belong to; an empty or absent context writes the same file and
    fingerprint as before context existed.
    """
    digest, rows, shapes = hashlib.sha256(), 0, None
    for x, y in _Chunks(path, make_batches()):
        if shapes is None:  # _Chunks guarantees every later chunk has the same row shapes
            shapes = (x.shape[1:], y.shape[1:], y.dtype.str)
            digest.update(repr(shapes).encode())
        digest.update(x.tobytes())
        digest.update(y.tobytes())
        rows += len(x)
    if shapes is None:
        raise ValueError(f"{path}: the split is empty")
    context = check_context(str(path), context or {}, rows)
    if context:  # only then: context-free splits keep their fingerprints
        _context_digest(digest, context)
    fingerprint = digest.hexdigest()[:DIGEST_CHARS]
    metadata = {
        **provenance,
        "fingerprint": fingerprint,
        "rows": rows,
        "input_shape": list(shapes[0]),
        "target_shape": list(shapes[1]),
        "target_dtype": str(np.dtype(shapes[2])),
    }
    if context:
        metadata["context"] = sorted(context)
    names = ["x", "y", *(CONTEXT_PREFIX + name for name in sorted(context))]
    written = 0
    with atomic_path(path) as tmp, pa.OSFile(str(tmp), "wb") as sink:
        writer = None
        for x, y in _Chunks(path, make_batches()):
            rows_here = slice(written, written + len(x))
            extra = [_column(context[name][rows_here]) for name in sorted(context)]
            batch = pa.record_batch([_column(x), _column(y), *extra], names=names)
            if writer is None:
                schema = batch.schema.with_metadata({METADATA_KEY: json.dumps(metadata).encode()})
                writer = pa.ipc.new_file(sink, schema)
            writer.write_batch(batch)
            written += len(x)
        if written != rows:  # raised inside: atomic_path then leaves nothing at `path`
            raise ValueError(
                f"{path}: the batches changed between passes ({rows} then {written} rows)"
            )
        writer.close()
    return fingerprint


def read_metadata(path: str | Path) -> dict[str, Any]:
    with _open(path) as reader:
        return _metadata(path, reader.schema)


def read_split(path: str | Path) -> SplitData:
    """Read a whole split into memory (for small splits; use iter_batches for large ones)."""
    with _open(path) as reader:
        metadata = _metadata(path, reader.schema)
        table = reader.read_all()
    context = {
        name.removeprefix(CONTEXT_PREFIX): _to_numpy(table.column(name))
        for name in table.column_names
        if name.startswith(CONTEXT_PREFIX)
    }
    return SplitData(_to_numpy(table.column("x")), _to_numpy(table.column("y")), metadata, context)


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
