"""A user's own task from a YAML file, and the ingest-boundary errors for bad data."""

import textwrap

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from orca.config.pipeline import PipelineConfig
from orca.data.arrow_io import read_split, write_split
from orca.data.task_file import load_task_file, read_task_file
from orca.data.tasks import TASKS, get_task, task_names
from orca.registry import UnknownNameError
from orca.stages.ingest import ingest


def sensor_data(n, seed, length=40):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, size=n)
    t = np.linspace(0, 1, length)
    x = np.sin(2 * np.pi * (y[:, None] + 1) * t) + 0.1 * rng.normal(size=(n, length))
    return x.astype(np.float32), y


def write_task(tmp_path, name="my-sensor", splits=None, extra="", data=None):
    data = data or {"train": sensor_data(30, 0), "test": sensor_data(12, 1)}
    (tmp_path / "data").mkdir(exist_ok=True)
    for split, (x, y) in data.items():
        np.savez(tmp_path / "data" / f"{split}.npz", X=x, y=y)
    splits = splits or {split: f"data/{split}.npz" for split in data}
    lines = "\n".join(f"  {split}: {path}" for split, path in splits.items())
    (tmp_path / "task.yaml").write_text(
        textwrap.dedent(
            f"""\
            name: {name}
            input: 1d
            output: classification
            metric: error_rate
            max_seq_len: 16
            splits:
            """
        )
        + lines
        + "\n"
        + extra
    )
    return tmp_path / "task.yaml"


def test_a_task_file_registers_a_task_and_ingests_with_a_carved_validation_split(tmp_path):
    spec = load_task_file(write_task(tmp_path, extra="refine: {epochs: 2}\n"))
    assert get_task("my-sensor") is spec
    assert spec.input_shape == (1, 40) and spec.num_outputs == 3
    assert spec.loss == "cross_entropy" and spec.refine.epochs == 2
    out = ingest("my-sensor", tmp_path / "ingested", seed=0)
    assert out["splits"]["train"]["rows"] + out["splits"]["validation"]["rows"] == 30
    assert out["splits"]["test"]["rows"] == 12
    test = read_split(out["splits"]["test"]["path"])
    np.testing.assert_array_equal(test.x[:, 0], sensor_data(12, 1)[0])
    # Loading the same file again replaces the registration; the data version follows the data.
    before = spec.data_version
    np.savez(tmp_path / "data" / "test.npz", X=sensor_data(12, 2)[0], y=sensor_data(12, 2)[1])
    assert load_task_file(tmp_path / "task.yaml").data_version != before


def test_a_published_validation_split_is_used_as_is(tmp_path):
    data = {"train": sensor_data(20, 0), "validation": sensor_data(7, 3), "test": sensor_data(5, 1)}
    load_task_file(write_task(tmp_path, name="with-val", data=data))
    out = ingest("with-val", tmp_path / "ingested", seed=0)
    assert [out["splits"][s]["rows"] for s in ("train", "validation", "test")] == [20, 7, 5]


def test_parquet_and_arrow_splits(tmp_path):
    rng = np.random.default_rng(0)
    columns = {f"f{i}": rng.normal(size=25) for i in range(6)}
    pq.write_table(pa.table({**columns, "y": rng.integers(0, 2, size=25)}), tmp_path / "tr.parquet")
    x = rng.normal(size=(9, 1, 6)).astype(np.float32)
    write_split(tmp_path / "te.arrow", x, rng.integers(0, 2, size=9), {})
    (tmp_path / "tab.yaml").write_text(
        "name: my-table\ninput: tabular\noutput: classification\nmetric: one_minus_auroc\n"
        "splits: {train: tr.parquet, test: te.arrow}\n"
    )
    spec = load_task_file(tmp_path / "tab.yaml")
    assert spec.input_shape == (1, 6) and spec.num_outputs == 2
    out = ingest("my-table", tmp_path / "ingested", seed=0)
    assert out["splits"]["test"]["rows"] == 9


def test_pipeline_config_takes_a_task_file(tmp_path):
    path = write_task(tmp_path, name="cfg-task")
    config = PipelineConfig.for_task(None, task_file=str(path), backbone="minilm-l6")
    assert config.task == "cfg-task" and config.task_file == str(path.resolve())
    load_task_file(path)  # the config registers nothing: whoever runs the stages does
    assert config.data_version == get_task("cfg-task").data_version != ""
    again = PipelineConfig.from_dict(config.to_dict())
    assert again == config


def _registered() -> list[tuple[str, int]]:
    task_names()  # the built-in tasks register on first lookup
    return [(name, id(spec)) for name, spec in TASKS.items()]


def test_a_pipeline_config_with_a_task_file_registers_nothing(tmp_path):
    path = write_task(tmp_path, name="unregistered-task", extra="refine: {epochs: 2}\n")
    before = _registered()
    config = PipelineConfig.for_task(None, task_file=str(path))
    direct = PipelineConfig(task="unregistered-task", backbone="minilm-l6", task_file=str(path))
    assert config.refine.epochs == 2  # the file's own defaults, read without registering
    assert config.data_version == direct.data_version == read_task_file(path).data_version
    assert _registered() == before
    with pytest.raises(UnknownNameError, match="unknown task 'unregistered-task'"):
        get_task("unregistered-task")
    assert read_task_file(path) is read_task_file(path)  # unchanged files are read once
    assert load_task_file(path) is get_task("unregistered-task") is read_task_file(path)


def test_a_task_file_config_checks_the_name_without_registering(tmp_path):
    path = write_task(tmp_path, name="gunpoint")  # a built-in task's name
    before = _registered()
    with pytest.raises(ValueError, match=r"task name 'gunpoint' is already taken by a built-in"):
        PipelineConfig.for_task(None, task_file=str(path))
    other = write_task(tmp_path, name="declared-task")
    with pytest.raises(ValueError, match=r"task='gunpoint' but the task file .* 'declared-task'"):
        PipelineConfig.for_task("gunpoint", task_file=str(other))
    assert _registered() == before


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        ("missing_file", FileNotFoundError, r"splits.test: file .*nope.npz does not exist"),
        ("missing_key", ValueError, r"missing array\(s\) \['y'\]; found \['X'\]"),
        ("wrong_shape", ValueError, r"test\]: inputs have shape \(1, 41\) per example.*\(1, 40\)"),
        ("nan", ValueError, r"test\]: inputs contain 2 NaN or inf values"),
        (
            "label_range",
            ValueError,
            r"test\]: classes \[7\] never occur in the training labels \(training counts",
        ),
        ("empty", ValueError, r"test\]: the split is empty"),
        ("bad_format", ValueError, r"has format '.csv'; valid formats: .arrow, .npz, .parquet"),
        ("no_test", ValueError, r"splits.test is required"),
        ("bad_output", ValueError, r"output='segmentation' is not a valid choice"),
    ],
)
def test_bad_task_files_and_data_are_named(tmp_path, change, error, message):
    x, y = sensor_data(12, 1)
    data = {"train": sensor_data(30, 0), "test": (x, y)}
    splits, extra, name = None, "", f"bad-{change}"
    if change == "missing_file":
        splits = {"train": "data/train.npz", "test": "data/nope.npz"}
    elif change == "wrong_shape":
        data["test"] = sensor_data(12, 1, length=41)
    elif change == "nan":
        x[0, :2] = np.nan
    elif change == "label_range":
        y[3] = 7
    elif change == "empty":
        data["test"] = (x[:0], y[:0])
    elif change == "bad_format":
        splits = {"train": "data/train.npz", "test": "data/test.csv"}
    elif change == "no_test":
        splits = {"train": "data/train.npz"}
    path = write_task(tmp_path, name=name, splits=splits, extra=extra, data=data)
    if change == "bad_format":
        (tmp_path / "data" / "test.csv").write_text("1,2,3\n")
    if change == "missing_key":
        np.savez(tmp_path / "data" / "test.npz", X=x)
    if change == "bad_output":
        path.write_text(path.read_text().replace("classification", "segmentation"))
    with pytest.raises(error, match=message):
        load_task_file(path)
        ingest(name, tmp_path / "ingested", seed=0)
    assert not (tmp_path / "ingested").exists()  # nothing half-written


def test_a_truncated_arrow_split_and_an_unknown_task_are_named(tmp_path):
    x, y = sensor_data(12, 1)
    write_split(tmp_path / "good.arrow", x[:, None], y, {})
    data = (tmp_path / "good.arrow").read_bytes()
    (tmp_path / "cut.arrow").write_bytes(data[: len(data) // 2])
    from orca.data.arrow_io import SplitFileError

    with pytest.raises(SplitFileError, match=r"cut\.arrow: not a readable Arrow IPC file"):
        read_split(tmp_path / "cut.arrow")
    with pytest.raises(UnknownNameError, match=r"unknown task 'no-such-task'; valid tasks: "):
        get_task("no-such-task")


def test_a_training_fraction_keeps_a_stratified_share_of_train_only(tmp_path):
    load_task_file(write_task(tmp_path, name="fraction-task"))
    full = ingest("fraction-task", tmp_path / "full", seed=0)
    tenth = ingest("fraction-task", tmp_path / "tenth", seed=0, train_fraction=0.1)
    assert full["splits"]["train"]["rows"] == 24
    assert tenth["splits"]["train"]["rows"] == 3  # max(classes, round(0.1 * 24))
    assert len(set(read_split(tenth["splits"]["train"]["path"]).y.tolist())) == 3
    for split in ("validation", "test"):
        assert tenth["splits"][split]["fingerprint"] == full["splits"][split]["fingerprint"]
