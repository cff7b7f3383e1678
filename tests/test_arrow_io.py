import numpy as np
import pyarrow as pa
import pytest

from orca.data import arrow_io
from orca.data.arrow_io import (
    SplitFileError,
    iter_batches,
    read_split,
    write_split,
    write_split_batches,
)


def test_split_round_trip_keeps_shape_dtype_and_provenance(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(10, 2, 7)).astype(np.float32)
    y = rng.integers(0, 3, size=10)
    path = tmp_path / "train.arrow"
    fingerprint = write_split(path, x, y, {"task": "t", "seed": 3})
    split = read_split(path)
    np.testing.assert_array_equal(split.x, x)
    np.testing.assert_array_equal(split.y, y)
    assert split.y.dtype == np.int64
    assert split.metadata["input_shape"] == [2, 7]
    assert split.metadata["seed"] == 3
    assert split.metadata["fingerprint"] == fingerprint
    assert write_split(tmp_path / "again.arrow", x, y, {}) == fingerprint
    y[0] = (y[0] + 1) % 3
    assert write_split(tmp_path / "changed.arrow", x, y, {}) != fingerprint
    schema = pa.ipc.open_file(pa.memory_map(str(path))).schema
    assert isinstance(schema.field("x").type, pa.FixedShapeTensorType)


def test_dense_targets_and_batched_iteration(tmp_path, monkeypatch):
    monkeypatch.setattr(arrow_io, "ROWS_PER_BATCH", 4)
    x = np.arange(11 * 3, dtype=np.float32).reshape(11, 1, 3)
    y = -x[:, 0, :]
    path = tmp_path / "dense.arrow"
    write_split(path, x, y, {})
    batches = list(iter_batches(path, batch_size=3))
    assert [len(bx) for bx, _ in batches] == [3, 1, 3, 1, 3]
    np.testing.assert_array_equal(np.concatenate([bx for bx, _ in batches]), x)
    np.testing.assert_array_equal(np.concatenate([by for _, by in batches]), y)


def test_bad_inputs_fail_with_the_file_named(tmp_path):
    x = np.zeros((3, 1, 2), dtype=np.float32)
    with pytest.raises(ValueError, match="x has 3 rows but y has 2"):
        write_split(tmp_path / "a.arrow", x, np.zeros(2, dtype=np.int64), {})
    x[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        write_split(tmp_path / "b.arrow", x, np.zeros(3, dtype=np.int64), {})
    assert not list(tmp_path.iterdir())  # nothing partial left behind
    with pytest.raises(SplitFileError, match="does not exist"):
        read_split(tmp_path / "missing.arrow")
    corrupt = tmp_path / "corrupt.arrow"
    corrupt.write_bytes(b"not arrow at all")
    with pytest.raises(SplitFileError, match=r"corrupt\.arrow: not a readable Arrow IPC file"):
        read_split(corrupt)


def test_a_crash_mid_write_leaves_no_file(tmp_path, monkeypatch):
    def explode(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(pa.ipc, "new_file", explode)
    with pytest.raises(OSError, match="disk full"):
        write_split(tmp_path / "s.arrow", np.zeros((2, 1, 2)), np.zeros(2, dtype=np.int64), {})
    assert list(tmp_path.iterdir()) == []


def test_streamed_batches_write_the_same_split_in_bounded_pieces(tmp_path, monkeypatch):
    monkeypatch.setattr(arrow_io, "ROWS_PER_BATCH", 5)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(23, 2, 3)).astype(np.float32)
    y = rng.normal(size=(23, 4)).astype(np.float32)
    whole = write_split(tmp_path / "whole.arrow", x, y, {"split": "train"})
    sizes = [1, 7, 2, 13]  # uneven caller batches are re-chunked to ROWS_PER_BATCH rows

    def batches():
        start = 0
        for size in sizes:
            yield x[start : start + size], y[start : start + size]
            start += size

    streamed = write_split_batches(tmp_path / "streamed.arrow", batches, {"split": "train"})
    assert streamed == whole
    split = read_split(tmp_path / "streamed.arrow")
    np.testing.assert_array_equal(split.x, x)
    np.testing.assert_array_equal(split.y, y)
    assert split.metadata["rows"] == 23
    reader = pa.ipc.open_file(pa.memory_map(str(tmp_path / "streamed.arrow")))
    assert [reader.get_batch(i).num_rows for i in range(reader.num_record_batches)] == [5] * 4 + [3]


def test_streams_that_are_empty_or_change_shape_leave_no_file(tmp_path):
    with pytest.raises(ValueError, match="empty"):
        write_split_batches(tmp_path / "e.arrow", lambda: [], {})

    def changing():
        yield np.zeros((2, 3)), np.zeros(2, dtype=np.int64)
        yield np.zeros((2, 4)), np.zeros(2, dtype=np.int64)

    with pytest.raises(ValueError, match="row shapes"):
        write_split_batches(tmp_path / "c.arrow", changing, {})
    assert list(tmp_path.iterdir()) == []


def test_context_columns_stay_aligned_across_record_batches(tmp_path, monkeypatch):
    monkeypatch.setattr(arrow_io, "ROWS_PER_BATCH", 4)
    rng = np.random.default_rng(2)
    x = rng.normal(size=(11, 1, 3, 3)).astype(np.float32)
    y = (rng.random((11, 1, 3, 3)) > 0.5).astype(np.float32)
    context = {"clip": np.arange(11) // 2, "ignore": (rng.random((11, 1, 3, 3)) > 0.7)}
    path = tmp_path / "context.arrow"
    fingerprint = write_split(path, x, y, {"split": "test"}, context)
    split = read_split(path)
    assert sorted(split.context) == ["clip", "ignore"] == split.metadata["context"]
    np.testing.assert_array_equal(split.context["clip"], context["clip"])
    assert split.context["clip"].dtype == np.int64 and split.context["ignore"].dtype == np.uint8
    np.testing.assert_array_equal(split.context["ignore"], context["ignore"])
    schema = pa.ipc.open_file(pa.memory_map(str(path))).schema
    assert schema.field("context.clip").type == pa.int64()
    assert isinstance(schema.field("context.ignore").type, pa.FixedShapeTensorType)
    assert [len(bx) for bx, _ in iter_batches(path, 8)] == [4, 4, 3]  # x and y as before
    # The context is part of the content: another clip assignment, another fingerprint.
    other = {**context, "clip": np.arange(11)}
    assert write_split(tmp_path / "other.arrow", x, y, {}, other) != fingerprint


def test_bad_context_is_refused_with_the_file_and_field_named(tmp_path):
    x, y = np.zeros((3, 2), dtype=np.float32), np.zeros(3, dtype=np.int64)
    cases = [
        ({"clip": np.arange(2)}, r"b\.arrow: context 'clip': expected 3 integers"),
        ({"ignore": np.full((3, 2), 2)}, r"context 'ignore': mask values must be 0 or 1"),
        ({"clips": np.arange(3)}, r"unknown context field 'clips'; valid context fields: clip"),
    ]
    for context, message in cases:
        with pytest.raises(ValueError, match=message):
            write_split(tmp_path / "b.arrow", x, y, {}, context)
    assert list(tmp_path.iterdir()) == []
