"""Bad input fails early and clearly, and loses nothing (issue 8, item 3).

A matrix of bad inputs across the five places input comes from: command-line arguments,
flow parameters, task and config files, data files, and model/checkpoint files, plus
disk-full writes. Every case asserts an error that names the file, field or value and says
what was expected. Before the cases, the module does real work in the isolated state
directory (an `orca ingest` through the command line and one MLflow run); after every case
it checks that those results are unchanged, that no temporary file was left behind, and
that no MLflow run was deleted, changed or left RUNNING.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from mlflow import MlflowClient
from mlflow.entities import ViewType
from prefect.exceptions import ParameterTypeError

from cli.main import main
from orca.checkpoint import CheckpointError, load_into, load_state, save_state
from orca.data.arrow_io import read_split, write_split
from orca.data.task_file import load_task_file
from orca.data.tasks import get_task
from orca.model.bodies import BodyWeightsError, load_body
from orca.stages.ingest import ingest

TRACKED = ("data", "artifacts", "results")  # where the state directory keeps results


# ---------------------------------------------------------------------------------------
# Earlier results, and the check after every case that they are intact


@dataclass(frozen=True)
class Earlier:
    reference: dict  # what `orca ingest gunpoint --json` printed
    run_id: str  # a FINISHED MLflow run made before the bad inputs


def _files(root: Path) -> dict[str, tuple[int, str]]:
    """Every file under the tracked state folders: (mtime_ns, sha256) by relative path."""
    out = {}
    for folder in TRACKED:
        for path in sorted((root / folder).rglob("*")):
            if path.is_file():
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                out[str(path.relative_to(root))] = (path.stat().st_mtime_ns, digest)
    return out


def _runs() -> dict[str, tuple]:
    """Every MLflow run, deleted ones included: (status, lifecycle stage, end time)."""
    client = MlflowClient()
    experiments = client.search_experiments(view_type=ViewType.ALL)
    runs = client.search_runs(
        [e.experiment_id for e in experiments], run_view_type=ViewType.ALL, max_results=50000
    )
    return {r.info.run_id: (r.info.status, r.info.lifecycle_stage, r.info.end_time) for r in runs}


@pytest.fixture(scope="module")
def earlier(prefect_harness) -> Earlier:
    from orca.config.pipeline import PipelineConfig
    from tasks import tracking

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["ingest", "gunpoint", "--json"]) == 0
    reference = json.loads(out.getvalue().strip().splitlines()[-1])
    run_id = tracking.start_run(PipelineConfig.for_task("gunpoint"), "before-bad-input")
    MlflowClient().log_metric(run_id, "test_value", 0.25)
    tracking.finish_run(run_id, "FINISHED")
    return Earlier(reference, run_id)


def _temporaries(root: Path) -> set[str]:
    return {str(path) for path in root.rglob("*.tmp-*")}


@pytest.fixture(autouse=True)
def nothing_is_lost(earlier: Earlier, state_root: Path):
    """After each case: earlier results unchanged, nothing new written or left half-written,
    and MLflow runs neither changed, deleted nor left RUNNING. (Relative to the state before
    the case, so other test modules' leftovers in the shared state directory do not count.)"""
    files, runs, temporaries = _files(state_root), _runs(), _temporaries(state_root)
    yield
    after = _files(state_root)
    changed = sorted(name for name, seen in files.items() if after.get(name) != seen)
    assert not changed, f"earlier results removed or changed: {changed}"
    added = sorted(n for n in set(after) - set(files) if not n.startswith("results"))
    assert not added, f"a rejected input still wrote {added}"
    leftovers = sorted(_temporaries(state_root) - temporaries)
    assert not leftovers, f"partial files left behind: {leftovers}"
    now = _runs()
    assert {run: now.get(run) for run in runs} == runs, "an earlier MLflow run changed"
    assert now[earlier.run_id][:2] == ("FINISHED", "active")
    running = [run for run, (status, *_) in now.items() if status == "RUNNING" and run not in runs]
    assert not running, f"MLflow runs left RUNNING: {running}"


# ---------------------------------------------------------------------------------------
# Builders


def sensor_data(n: int, seed: int, length: int = 40) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, size=n)
    x = np.sin(np.linspace(0, 6, length) * (y[:, None] + 1)) + 0.1 * rng.normal(size=(n, length))
    return x.astype(np.float32), y


TASK_YAML = """\
name: {name}
input: 1d
output: classification
metric: error_rate
max_seq_len: 16
splits: {{train: train.npz, test: test.npz}}
"""


def task_dir(tmp_path: Path, train=None, test=None) -> Path:
    """A folder with valid train.npz and test.npz (1d, 3 classes, length 40)."""
    splits = {"train": train or sensor_data(30, 0), "test": test or sensor_data(12, 1)}
    for split, (x, y) in splits.items():
        np.savez(tmp_path / f"{split}.npz", X=x, y=y)
    return tmp_path


def good_task_file(tmp_path: Path, name: str) -> Path:
    path = task_dir(tmp_path) / "task.yaml"
    path.write_text(TASK_YAML.format(name=name))
    return path


# ---------------------------------------------------------------------------------------
# 1. Command-line arguments: exit status 2 and `orca: error: ...`, before any work


def _no_work(*args, **kwargs):
    raise AssertionError("a rejected command must not start any work")


CLI_CASES = [
    pytest.param(
        ["run", "gunpoint", "--set", "refine.lr=Infinity"],
        r"refine\.lr=inf must be a finite number",
        id="cli-set-lr-infinity",
    ),
    pytest.param(
        ["run", "gunpoint", "--set", "refine.epochs=abc"],
        r"refine\.epochs='abc' must be an integer",
        id="cli-set-epochs-not-a-number",
    ),
    pytest.param(
        ["run", "gunpoint", "--set", "proxy.dataset=imagenet"],
        r"proxy\.dataset='imagenet' is not a valid choice; expected one of: 'auto', .*'mnist'",
        id="cli-set-unknown-proxy-dataset",
    ),
    pytest.param(
        ["run", "gunpoint", "--set", "align.lr_milestones=5"],
        r"align\.lr_milestones=5 must be a list of epoch numbers, e\.g\. \[20, 40\]",
        id="cli-set-milestones-not-a-list",
    ),
    pytest.param(
        ["--result-storage", "nosuch://bucket/records", "ingest", "gunpoint"],
        r"result storage 'nosuch://bucket/records': Protocol not known: nosuch",
        id="cli-result-storage-unknown-protocol",
    ),
    pytest.param(
        ["bench", "--tasks", "gunpoint", "--seeds", "0"],
        r"seeds=0 is out of range; expected >= 1",
        id="cli-bench-zero-seeds",
    ),
    pytest.param(
        ["ablations", "--seeds", "0"],
        r"seeds=0 is out of range; expected >= 1",
        id="cli-ablations-zero-seeds",
    ),
    pytest.param(
        ["retry", "not-a-uuid"],
        r"FLOW_RUN_ID 'not-a-uuid' is not a flow run id; expected a UUID",
        id="cli-retry-not-a-flow-run-id",
    ),
    pytest.param(
        ["run", "gunpoint", "--backbone", "{tmp}"],
        r"backbone '.*': .*config\.json does not exist; expected a Hugging Face model directory",
        id="cli-backbone-directory-without-config",
    ),
    pytest.param(
        ["run", "gunpoint", "--task-file", "{tmp}/task.yaml"],
        r"task='gunpoint' but the task file .*task\.yaml declares 'cli-declared'",
        id="cli-task-name-contradicts-task-file",
    ),
    pytest.param(
        ["otdd", "a.npz", "b.npz", "--maxsamples", "-5"],
        r"^orca otdd: error: max_samples=-5 is out of range; expected >= 1",
        id="cli-otdd-negative-maxsamples",
    ),
]


@pytest.mark.parametrize(("argv", "message"), CLI_CASES)
def test_cli_arguments(argv, message, tmp_path, capsys, monkeypatch):
    from cli import commands_report, commands_run, commands_sweep

    for name in ("run_pipeline", "ingest"):
        monkeypatch.setattr(commands_run, name, _no_work)
    for name in ("run_bench", "run_demo"):
        monkeypatch.setattr(commands_sweep, name, _no_work)
    monkeypatch.setattr(commands_report, "run_ablations", _no_work)
    good_task_file(tmp_path, "cli-declared")
    argv = [arg.replace("{tmp}", str(tmp_path)) for arg in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert re.search(message, err, re.MULTILINE), err
    assert err.startswith(("orca: error: ", "orca otdd: error: "))


# ---------------------------------------------------------------------------------------
# 2. Flow parameters: rejected by the flow's parameter validation, naming the field


GOOD = {"task": "gunpoint", "backbone": "minilm-l6"}

FLOW_CASES = [
    pytest.param(
        "pipeline",
        {"config": {**GOOD, "task": "gunpiont"}},
        r"config: .*unknown task 'gunpiont'; valid tasks: .*gunpoint",
        id="flow-pipeline-unknown-task",
    ),
    pytest.param(
        "pipeline",
        {"config": {**GOOD, "seed": "three"}},
        r"config\.seed: Input should be a valid integer",
        id="flow-pipeline-seed-not-an-integer",
    ),
    pytest.param(
        "pipeline",
        {"config": {**GOOD, "split_seed": -1}},
        r"config: .*split_seed=-1 is out of range; expected >= 0",
        id="flow-pipeline-negative-split-seed",
    ),
    pytest.param(
        "pipeline",
        {"config": {**GOOD, "sede": 3}},
        r"config\.sede: Unexpected keyword argument",
        id="flow-pipeline-unknown-field",
    ),
    pytest.param(
        "pipeline",
        {"config": {**GOOD, "align": {"procedure": "batch"}}},
        r"config\.align: .*align\.procedure: unknown align procedure 'batch'; "
        r"valid align procedures: minibatch, per_class",
        id="flow-pipeline-unknown-align-procedure",
    ),
    pytest.param(
        "pipeline",
        {"config": {**GOOD, "train_fraction": 0}},
        r"train_fraction=0\.0 is out of range; expected > 0",
        id="flow-pipeline-train-fraction-zero",
    ),
    pytest.param(
        "pipeline",
        {"config": GOOD, "register_model": "maybe"},
        r"register_model: Input should be a valid boolean",
        id="flow-pipeline-register-model-not-a-bool",
    ),
    pytest.param(
        "ingest_stage",
        {"config": GOOD, "refresh": "yes please"},
        r"refresh: Input should be a valid boolean",
        id="flow-stage-refresh-not-a-bool",
    ),
    pytest.param(
        "sweep",
        {"config": {"tasks": ["gunpoint"], "overrides": {"refine": {"lr": "fast"}}}},
        r"config: .*refine\.lr='fast' must be a number",
        id="flow-sweep-override-wrong-type",
    ),
    pytest.param(
        "ablations",
        {"config": {"image_task": "gunpoint"}},
        r"config: .*image_task='gunpoint' must be a 2d task",
        id="flow-ablations-image-task-not-2d",
    ),
]


def _flow(name: str):
    from flows.ablations import ablations
    from flows.pipeline import pipeline
    from flows.stage_flows import ingest_stage
    from flows.sweep import sweep

    return {
        "pipeline": pipeline,
        "ingest_stage": ingest_stage,
        "sweep": sweep,
        "ablations": ablations,
    }[name]


@pytest.mark.parametrize(("flow", "parameters", "message"), FLOW_CASES)
def test_flow_parameters(flow, parameters, message):
    with pytest.raises(ParameterTypeError, match=message):
        _flow(flow).validate_parameters(parameters)


def test_flow_parameter_task_file_that_does_not_exist(tmp_path):
    missing = tmp_path / "nope" / "task.yaml"
    config = {**GOOD, "task": "x", "task_file": str(missing)}
    with pytest.raises(FileNotFoundError, match=rf"task file {re.escape(str(missing))} does not"):
        _flow("pipeline").validate_parameters({"config": config})


def test_flow_call_with_an_infinite_lr_opens_no_mlflow_run():
    before = _runs()
    config = {**GOOD, "refine": {"lr": float("inf")}}
    with pytest.raises(ParameterTypeError, match=r"config\.refine: .*lr=inf must be a finite"):
        _flow("pipeline")(config=config)
    assert _runs() == before


# ---------------------------------------------------------------------------------------
# 3. Task and config files: ValueError naming the file and the field


def _task_text(name: str, change: str) -> tuple[str, str]:
    """(file name, text) of a task file with one thing wrong."""
    text = TASK_YAML.format(name=name)
    if change == "empty":
        return "task.yaml", ""
    if change == "invalid-yaml":
        return "task.yaml", text.replace("splits: {", "splits: [{")
    if change == "missing-metric":
        return "task.yaml", text.replace("metric: error_rate\n", "")
    if change == "unknown-key":
        return "task.yaml", text + "epochz: 3\n"
    if change == "refine-not-a-mapping":
        return "task.yaml", text + "refine: 5\n"
    if change == "align-out-of-range":
        return "task.yaml", text + "align: {epochs: -2}\n"
    if change == "unknown-metric":
        return "task.yaml", text.replace("error_rate", "accuracy")
    if change == "metric-of-another-output":
        return "task.yaml", text.replace("error_rate", "mae")
    if change == "name-of-a-built-in-task":
        return "task.yaml", TASK_YAML.format(name="gunpoint")
    if change == "splits-not-a-mapping":
        return "task.yaml", text.replace("{train: train.npz, test: test.npz}", "[train.npz]")
    if change == "validation-fraction-out-of-range":
        return "task.yaml", text + "validation_fraction: 2\n"
    if change == "json-wrong-type":
        fields = {
            "name": name,
            "input": "1d",
            "output": "classification",
            "metric": "error_rate",
            "max_seq_len": "64",
            "splits": {"train": "train.npz", "test": "test.npz"},
        }
        return "task.json", json.dumps(fields, indent=1)
    raise AssertionError(change)


TASK_FILE_CASES = [
    ("empty", r"task\.yaml: the file is empty; expected a mapping of task fields"),
    ("invalid-yaml", r"(?s)task\.yaml: not valid YAML \(.*line \d+"),
    (
        "missing-metric",
        r"task\.yaml: TaskFile: missing required field\(s\) metric; "
        r"required fields: name, input, output, metric, splits",
    ),
    ("unknown-key", r"task\.yaml: TaskFile: unknown field\(s\) epochz; valid fields: name, input"),
    (
        "refine-not-a-mapping",
        r"task\.yaml: refine must be a mapping of RefineConfig fields \(e\.g\. \{epochs: 10\}\), "
        r"got 5",
    ),
    ("align-out-of-range", r"task\.yaml: align\.epochs=-2 is out of range; expected >= 0"),
    (
        "unknown-metric",
        r"task\.yaml: task .*: metric: unknown metric 'accuracy'; valid metrics: .*error_rate, mae",
    ),
    (
        "metric-of-another-output",
        r"metric for output 'classification'='mae' is not a valid choice; "
        r"expected one of: 'error_rate', 'one_minus_auroc', 'one_minus_macro_f1'",
    ),
    (
        "name-of-a-built-in-task",
        r"task\.yaml: task name 'gunpoint' is already taken by a built-in task",
    ),
    ("splits-not-a-mapping", r"task\.yaml: splits must be a mapping of split name to path"),
    (
        "validation-fraction-out-of-range",
        r"task\.yaml: task .*: validation_fraction=2 is out of range; expected <= 0\.9",
    ),
    ("json-wrong-type", r"task\.json: max_seq_len='64' must be an integer"),
]


@pytest.mark.parametrize(
    ("change", "message"), [pytest.param(*case, id=f"task-{case[0]}") for case in TASK_FILE_CASES]
)
def test_task_and_config_files(change, message, tmp_path):
    name = f"bad-task-{change}"
    file_name, text = _task_text(name, change)
    path = task_dir(tmp_path) / file_name
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_task_file(path)
    assert get_task("gunpoint").source_file is None  # the built-in task is not shadowed
    with pytest.raises(ValueError, match=f"unknown task '{name}'"):
        get_task(name)  # nothing half-registered


# ---------------------------------------------------------------------------------------
# 4. Data files: the task file loads or ingest runs, and fails naming the file and split


def _classification_file(tmp_path: Path, name: str, train: str, test: str, **fields) -> Path:
    lines = {
        "name": name,
        "input": "tabular",
        "output": "classification",
        "metric": "error_rate",
        "splits": f"{{train: {train}, test: {test}}}",
        **fields,
    }
    path = tmp_path / "task.yaml"
    path.write_text("".join(f"{key}: {value}\n" for key, value in lines.items()))
    return path


def _tabular_test(tmp_path: Path, features: int = 2) -> str:
    np.savez(tmp_path / "test.npz", X=np.zeros((3, features)), y=np.array([0, 1, 0]))
    return "test.npz"


def _1d_file(tmp_path: Path, name: str, output: str, metric: str, train, test=None) -> Path:
    task_dir(tmp_path, train=train, test=test)
    path = tmp_path / "task.yaml"
    text = TASK_YAML.format(name=name).replace("classification", output)
    path.write_text(text.replace("error_rate", metric))
    return path


def _data_case(case: str, tmp_path: Path, name: str) -> Path:
    """Write a task whose data has one thing wrong; return its task file."""
    x, y = sensor_data(30, 0)
    if case == "npz-truncated":
        path = good_task_file(tmp_path, name)
        data = (tmp_path / "train.npz").read_bytes()
        (tmp_path / "train.npz").write_bytes(data[: len(data) // 2])
        return path
    if case == "npz-empty-file":
        path = good_task_file(tmp_path, name)
        (tmp_path / "train.npz").write_bytes(b"")
        return path
    if case == "npz-object-array":
        path = good_task_file(tmp_path, name)
        np.savez(tmp_path / "train.npz", X=np.array([x[0], "text"], dtype=object), y=y)
        return path
    if case == "parquet-corrupt":
        (tmp_path / "train.parquet").write_bytes(b"PAR1" + b"\x00" * 40)
        return _classification_file(tmp_path, name, "train.parquet", _tabular_test(tmp_path))
    if case == "parquet-no-y-column":
        pq.write_table(pa.table({"a": [1.0, 2.0], "label": [0, 1]}), tmp_path / "train.parquet")
        return _classification_file(tmp_path, name, "train.parquet", _tabular_test(tmp_path))
    if case == "parquet-text-feature":
        table = pa.table({"a": [1.0, 2.0, 3.0], "b": ["x", "y", "z"], "y": [0, 1, 0]})
        pq.write_table(table, tmp_path / "train.parquet")
        return _classification_file(tmp_path, name, "train.parquet", _tabular_test(tmp_path))
    if case == "parquet-ragged-rows":
        table = pa.table({"x": [[1.0, 2.0], [3.0], [1.0, 1.0]], "y": [0, 1, 0]})
        pq.write_table(table, tmp_path / "train.parquet")
        return _classification_file(tmp_path, name, "train.parquet", _tabular_test(tmp_path))
    if case == "arrow-not-written-by-orca":
        table = pa.table({"x": [1.0, 2.0], "y": [0, 1]})
        sink = pa.OSFile(str(tmp_path / "train.arrow"), "wb")
        with sink, pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
        return _classification_file(tmp_path, name, "train.arrow", _tabular_test(tmp_path))
    if case == "nan-class-labels":
        labels = y.astype(np.float64)
        labels[2] = np.nan
        return _1d_file(tmp_path, name, "classification", "error_rate", (x, labels))
    if case == "inf-regression-target":
        targets = y.astype(np.float32)
        targets[1] = np.inf
        test_x, test_y = sensor_data(12, 1)
        train, test = (x, targets), (test_x, test_y.astype(np.float32))
        return _1d_file(tmp_path, name, "regression", "mae", train, test)
    if case == "minus-inf-test-input":
        test_x, test_y = sensor_data(12, 1)
        test_x[3, 5] = -np.inf
        return _1d_file(tmp_path, name, "classification", "error_rate", (x, y), (test_x, test_y))
    if case == "length-mismatch":
        return _1d_file(tmp_path, name, "classification", "error_rate", (x, y[:29]))
    if case == "too-many-dimensions":
        return _1d_file(tmp_path, name, "classification", "error_rate", (x[:, None, None], y))
    if case == "multilabel-not-binary":
        targets = np.stack([y == 0, y == 1], axis=1).astype(np.float32)
        targets[0, 0] = 2
        test_x, test_y = sensor_data(12, 1)
        test = (test_x, np.stack([test_y == 0, test_y == 1], axis=1).astype(np.float32))
        return _1d_file(tmp_path, name, "multilabel", "one_minus_map", (x, targets), test)
    if case == "single-class-train":
        test_x, test_y = sensor_data(12, 1)
        train, test = (x, np.zeros_like(y)), (test_x, np.zeros_like(test_y))
        return _1d_file(tmp_path, name, "classification", "error_rate", train, test)
    if case == "class-missing-from-train":
        return _1d_file(tmp_path, name, "classification", "error_rate", (x, np.minimum(y, 1)))
    if case == "class-with-one-example":
        labels = np.minimum(y, 1)
        labels[4] = 2
        return _1d_file(tmp_path, name, "classification", "error_rate", (x, labels))
    if case == "too-few-for-validation":
        labels = np.arange(6) % 3  # 2 per class: 2 rows for validation, 3 classes
        return _1d_file(tmp_path, name, "classification", "error_rate", (x[:6], labels))
    raise AssertionError(case)


DATA_CASES = [
    (
        "npz-truncated",
        r"task\.yaml: splits\.train: .*train\.npz: unreadable \(BadZipFile: .*\); "
        r"expected a numpy\.savez archive of arrays X and y",
    ),
    ("npz-empty-file", r"task\.yaml: splits\.train: .*train\.npz: unreadable \(EOFError: "),
    (
        "npz-object-array",
        r"splits\.train: .*train\.npz: unreadable \(ValueError: Object arrays cannot be loaded "
        r"when allow_pickle=False\); expected .*\(no pickled objects\)",
    ),
    (
        "parquet-corrupt",
        r"task\.yaml: splits\.train: .*train\.parquet: unreadable \(ArrowInvalid: .*"
        r"expected a Parquet table with a 'y' column",
    ),
    (
        "parquet-no-y-column",
        r"task\.yaml: splits\.train: .*train\.parquet: no column 'y'; found \['a', 'label'\]",
    ),
    ("parquet-text-feature", r"task\.yaml \[train\]: inputs have dtype object; expected numbers"),
    (
        "parquet-ragged-rows",
        r"splits\.train: .*train\.parquet: unreadable \(ValueError: .*inhomogeneous.*\); "
        r"expected .*'x' list column of equal-length rows",
    ),
    (
        "arrow-not-written-by-orca",
        r"task\.yaml: splits\.train: .*train\.arrow: Arrow file has no orca metadata",
    ),
    (
        "nan-class-labels",
        r"task\.yaml: splits\.train: class labels must be whole numbers 0\.\.K-1, "
        r"found 1 NaN or inf values",
    ),
    ("inf-regression-target", r"task\.yaml \[train\]: targets contain 1 NaN or inf values"),
    ("minus-inf-test-input", r"task\.yaml \[test\]: inputs contain 1 NaN or inf values"),
    ("length-mismatch", r"task\.yaml \[train\]: 30 inputs but 29 targets"),
    (
        "too-many-dimensions",
        r"train\.npz \[train\]: 1d inputs must be 2- or 3-D arrays \(N first\), "
        r"got shape \(30, 1, 1, 40\)",
    ),
    ("multilabel-not-binary", r"task\.yaml \[train\]: multi-label targets must be 0 or 1"),
    (
        "single-class-train",
        r"task\.yaml \[train\]: a single class in the training labels \(0: 30 examples\)",
    ),
    (
        "class-missing-from-train",
        r"task\.yaml \[test\]: classes \[2\] never occur in the training labels "
        r"\(training counts per class: 0: \d+, 1: \d+\)",
    ),
    (
        "class-with-one-example",
        r"task\.yaml \[train\]: classes \[2\] have a single example, but the validation split "
        r"is carved .* \(counts per class: 0: \d+, 1: \d+, 2: 1\)",
    ),
    (
        "too-few-for-validation",
        r"task\.yaml \[train\]: 6 examples of 3 classes; validation_fraction 0\.2 leaves 2 for "
        r"validation and 4 for training",
    ),
]


@pytest.mark.parametrize(
    ("case", "message"), [pytest.param(*case, id=f"data-{case[0]}") for case in DATA_CASES]
)
def test_data_files(case, message, tmp_path):
    name = f"bad-data-{case}"
    path = _data_case(case, tmp_path, name)
    with pytest.raises(ValueError, match=message):
        load_task_file(path)
        ingest(name, tmp_path / "ingested", seed=0)
    assert not (tmp_path / "ingested").exists()  # nothing half-written


# ---------------------------------------------------------------------------------------
# 5. Model and checkpoint files


def _copy_model(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def test_model_directory_with_a_corrupt_config_json(tiny_bert_dir, tmp_path):
    directory = _copy_model(tiny_bert_dir, tmp_path / "model")
    (directory / "config.json").write_text('{"model_type": "bert", ')
    with pytest.raises(ValueError, match=r"model/config\.json is not valid JSON \(.*\); expected"):
        load_body(str(directory))


def test_model_directory_with_truncated_weights(tiny_bert_dir, tmp_path):
    directory = _copy_model(tiny_bert_dir, tmp_path / "model")
    weights = directory / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(
        BodyWeightsError,
        match=r"the weights in .*model are not a readable safetensors file \(.*\); "
        r"expected the model\.safetensors that save_pretrained writes",
    ):
        load_body(str(directory))


def test_vision_weights_that_are_not_safetensors(tmp_path):
    path = tmp_path / "garbage.safetensors"
    path.write_bytes(b"garbage!" * 4)
    with pytest.raises(
        BodyWeightsError, match=r"garbage\.safetensors: not a readable safetensors checkpoint"
    ):
        load_body(f"test-tiny-vit@{path}")


def test_vision_weights_of_another_architecture(tiny_vision_backbones):
    swin_weights = tiny_vision_backbones["test-tiny-swin"].split("@", 1)[1]
    with pytest.raises(BodyWeightsError) as caught:
        load_body(f"test-tiny-vit@{swin_weights}")
    message = str(caught.value)
    assert re.search(r"test-tiny-swin\.safetensors do not match the architecture", message)
    assert "missing_keys: blocks.0.attn.proj.bias" in message
    assert "unexpected_keys: layers.0.blocks.0" in message


def test_vision_pickle_that_is_not_a_state_dict(tmp_path):
    path = tmp_path / "weights.pth"
    torch.save([1, 2, 3], path)
    with pytest.raises(BodyWeightsError, match=r"weights\.pth: expected a state dict of tensors"):
        load_body(f"test-tiny-vit@{path}")


def test_checkpoint_of_another_shape(tmp_path):
    save_state(tmp_path / "head.safetensors", torch.nn.Linear(4, 3).state_dict())
    with pytest.raises(
        CheckpointError,
        match=r"head\.safetensors: checkpoint does not fit the model; shape mismatch: "
        r"bias \(checkpoint \(3,\), model \(2,\)\), weight \(checkpoint \(3, 4\), model \(2, 4\)\)",
    ):
        load_into(torch.nn.Linear(4, 2), tmp_path / "head.safetensors")


def test_checkpoint_that_is_an_empty_file(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(
        CheckpointError, match=r"model\.safetensors: not a readable safetensors checkpoint"
    ):
        load_state(tmp_path / "model.safetensors")


@pytest.mark.parametrize(
    ("manifest", "message"),
    [
        pytest.param(
            '{"format": 1, "epoch": ',
            r"epoch-0002/manifest\.json: unreadable checkpoint manifest",
            id="resume-truncated-manifest",
        ),
        pytest.param(
            '{"format": 7, "epoch": 2}',
            r"epoch-0002: checkpoint format 7, expected 1",
            id="resume-manifest-of-another-format",
        ),
    ],
)
def test_resume_checkpoint_manifest(manifest, message, tmp_path):
    from orca.training.trainer_state import EpochCheckpoints

    epoch = tmp_path / "checkpoints" / "epoch-0002"
    epoch.mkdir(parents=True)
    (epoch / "manifest.json").write_text(manifest)
    with pytest.raises(CheckpointError, match=message):
        EpochCheckpoints(tmp_path / "checkpoints", {}).restore(None, None, None, None, dict)


# ---------------------------------------------------------------------------------------
# 6. Disk full while writing: the error names the file; the earlier file stays usable


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _no_temporaries(directory: Path) -> list[str]:
    return [p.name for p in directory.rglob("*") if ".tmp-" in p.name]


def test_disk_full_rewriting_an_ingested_split_keeps_the_old_one(earlier, monkeypatch):
    import orca.atomic

    path = Path(earlier.reference["splits"]["train"]["path"])
    before = path.read_bytes()
    x = np.zeros((5, 1, 150), dtype=np.float32)
    monkeypatch.setattr(orca.atomic.os, "fsync", _enospc)  # the data never reaches the disk
    with pytest.raises(OSError, match=rf"could not write {re.escape(str(path))} \(No space") as err:
        write_split(path, x, np.zeros(5, dtype=np.int64), {})
    monkeypatch.undo()
    assert err.value.errno == errno.ENOSPC
    assert path.read_bytes() == before and not _no_temporaries(path.parent)
    assert (
        read_split(path).metadata["fingerprint"]
        == earlier.reference["splits"]["train"]["fingerprint"]
    )


def test_disk_full_saving_a_checkpoint_keeps_the_old_one(tmp_path, monkeypatch):
    import orca.checkpoint

    path = tmp_path / "model.safetensors"
    old = torch.nn.Linear(4, 2)
    save_state(path, old.state_dict())
    before = path.read_bytes()

    def half_then_full(tensors, filename, metadata=None):
        Path(filename).write_bytes(before[: len(before) // 2])  # a partial write, then ENOSPC
        _enospc()

    monkeypatch.setattr(orca.checkpoint, "save_file", half_then_full)
    with pytest.raises(OSError, match=rf"could not write {re.escape(str(path))} \(No space") as err:
        save_state(path, torch.nn.Linear(4, 2).state_dict())
    assert err.value.errno == errno.ENOSPC
    assert path.read_bytes() == before and not _no_temporaries(tmp_path)
    torch.testing.assert_close(load_state(path)["weight"], old.weight.detach())


def test_an_unreadable_input_inside_an_atomic_write_is_named_as_it_was(tmp_path):
    from orca.atomic import atomic_path

    missing = tmp_path / "input.npz"
    with (
        pytest.raises(FileNotFoundError, match=re.escape(str(missing))),
        atomic_path(tmp_path / "out.bin") as tmp,
    ):
        tmp.write_bytes(missing.read_bytes())
    assert not (tmp_path / "out.bin").exists() and not _no_temporaries(tmp_path)


@dataclass
class _Record:
    epoch: int

    def to_dict(self) -> dict:
        return asdict(self)


def test_disk_full_mid_epoch_checkpoint_keeps_the_previous_epoch(tmp_path, monkeypatch):
    from orca.training import trainer_state
    from orca.training.trainer_state import EpochCheckpoints, LoopState

    model = torch.nn.Linear(4, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1)
    generator = torch.Generator().manual_seed(0)
    checkpoints = EpochCheckpoints(tmp_path / "checkpoints", {"seed": 0})
    loop = LoopState(history=[_Record(0)], best_score=1.0, best_epoch=0)
    first = checkpoints.save(loop, model, optimizer, scheduler, generator)
    loop.history.append(_Record(1))
    monkeypatch.setattr(trainer_state.torch, "save", _enospc)  # trainer.pt of epoch 1
    with pytest.raises(OSError, match=r"could not write .*epoch-0001") as err:
        checkpoints.save(loop, model, optimizer, scheduler, generator)
    monkeypatch.undo()
    assert err.value.errno == errno.ENOSPC
    assert checkpoints.latest() == first and not _no_temporaries(tmp_path)
    restored = EpochCheckpoints(tmp_path / "checkpoints", {"seed": 0}).restore(
        model, optimizer, scheduler, generator, _Record
    )
    assert [record.epoch for record in restored.history] == [0]


# ---------------------------------------------------------------------------------------
# Last: the earlier ingest is still usable, exactly as it was


def test_the_earlier_results_are_still_usable(earlier):
    for split in earlier.reference["splits"].values():
        assert read_split(split["path"]).metadata["fingerprint"] == split["fingerprint"]
    run = MlflowClient().get_run(earlier.run_id)
    assert run.info.status == "FINISHED" and run.data.metrics["test_value"] == 0.25
