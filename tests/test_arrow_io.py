import numpy as np
import pyarrow as pa
import pytest

from orca.data import arrow_io
from orca.data.arrow_io import SplitFileError, iter_batches, read_split, write_split
from orca.fingerprint import fingerprint_arrays


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
    assert split.metadata["fingerprint"] == fingerprint == fingerprint_arrays(x, y.astype(np.int64))
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
