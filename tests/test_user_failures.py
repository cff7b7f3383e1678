"""Failures users met (issue 18): task files on worker processes, the exit status and the
flow run's state of a benchmark with failed runs."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

from mlflow import MlflowClient
from test_task_file import write_task

from cli.main import main
from orca.config.pipeline import PipelineConfig

REPO = Path(__file__).resolve().parents[1]


def test_a_task_file_config_unpickled_in_a_fresh_process_can_load_its_task(tmp_path):
    """Unpickling registers nothing (nor does construction): the process that runs the
    stages registers the file (tasks/stage_runs.py); the config's data version is known
    before that."""
    task_file = write_task(tmp_path, name="pickled-task")
    config = PipelineConfig.for_task(None, task_file=str(task_file), method="knn")
    program = (
        "import pickle, sys\n"
        "from orca.data.task_file import load_task_file\n"
        "from orca.data.tasks import get_task, task_names\n"
        "config = pickle.loads(sys.stdin.buffer.read())\n"
        "assert config.task not in task_names()\n"
        "version = config.data_version\n"
        "assert load_task_file(config.task_file).data_version == version\n"
        "print(get_task(config.task).name)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program],
        input=pickle.dumps(config),
        capture_output=True,
        cwd=REPO,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert done.stdout.decode().strip() == "pickled-task"


def test_bench_with_two_task_files_on_two_worker_processes(prefect_harness, tmp_path, capsys):
    files = []
    for name in ("task-a", "task-b"):
        (tmp_path / name).mkdir()
        files.append(write_task(tmp_path / name, name=name))
    argv = ["bench", *(f"--task-file={path}" for path in files), "--methods", "knn"]
    status = main([*argv, "--seeds", "1", "--workers", "2", "--threads", "1", "--json"])
    bench = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert bench["failures"] == [] and status == 0
    assert sorted(r["task"] for r in bench["results"]) == ["task-a", "task-b"]


def test_a_sweep_with_a_failed_run_exits_1_and_its_flow_run_is_failed(
    prefect_harness, tmp_path, capsys, monkeypatch
):
    import flows.sweep

    real_pipeline = flows.sweep.pipeline

    def pipeline(config, **kwargs):
        if config.method == "linear":
            raise RuntimeError("injected run failure")
        return real_pipeline(config, **kwargs)

    monkeypatch.setattr(flows.sweep, "pipeline", pipeline)  # what run_in_sweep calls
    task_file = write_task(tmp_path, name="half-failing")
    argv = ["bench", "--task-file", str(task_file), "--methods", "knn", "linear"]
    assert main([*argv, "--seeds", "1", "--json"]) == 1
    bench = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert bench["runs"] == 1  # the run that worked is kept
    assert len(bench["failures"]) == 1 and "injected run failure" in bench["failures"][0]
    from prefect import get_client

    parent = MlflowClient().get_run(bench["sweep_run_id"])
    flow_run_id = parent.data.tags["prefect.flow_run_id"]
    with get_client(sync_client=True) as prefect:
        state = prefect.read_flow_run(flow_run_id).state
    assert state.name == "Failed"
    assert "1 of 2 runs failed" in state.message


def test_the_ablations_name_corrupt_vision_weights_as_corrupt(tmp_path):
    from tasks.body_checks import weights_problem

    damaged = tmp_path / "swin.safetensors"
    damaged.write_bytes(b"not a safetensors file")
    why = weights_problem.fn(f"swin-tiny@{damaged}")
    assert why.startswith("the pretrained weights for swin-tiny@") and "corrupt" in why
    assert "swin.safetensors: not a readable safetensors checkpoint" in why


def test_the_ablations_name_absent_weights_as_absent(tmp_path, monkeypatch):
    from tasks.body_checks import weights_problem

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    why = weights_problem.fn("swin-tiny")  # offline, no local copy of the hub's file
    assert why.startswith("no pretrained weights for swin-tiny on this machine")
    absent = tmp_path / "absent.safetensors"
    why = weights_problem.fn(f"swin-tiny@{absent}")
    assert why.startswith("no pretrained weights for swin-tiny@") and "does not exist" in why


def test_compare_with_nothing_to_compare_prints_one_line_and_exits_2(
    prefect_harness, tmp_path, capsys
):
    argv = ["compare", "--sweep-run", "0123456789abcdef", "--reports-dir", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "orca: error: sweep run 0123456789abcdef has no finished pipeline runs" in err
    assert "Traceback" not in err


def test_a_registry_that_cannot_be_searched_is_an_error_not_a_new_version():
    import mlflow
    import pytest
    from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST

    from tasks.model_registry import version_with_fingerprint

    class BrokenRegistry:
        def search_model_versions(self, query):
            raise mlflow.exceptions.MlflowException("database is locked")

    class NoSuchModel:
        def search_model_versions(self, query):
            raise mlflow.exceptions.MlflowException(
                "no such model", error_code=RESOURCE_DOES_NOT_EXIST
            )

    with pytest.raises(mlflow.exceptions.MlflowException, match="database is locked"):
        version_with_fingerprint(BrokenRegistry(), "orca-gunpoint", "abc")
    assert version_with_fingerprint(NoSuchModel(), "orca-gunpoint", "abc") is None


def test_task_file_splits_outside_its_folder_need_allow_outside(tmp_path, capsys):
    import numpy as np
    import pytest
    from test_task_file import sensor_data

    from orca.data.task_file import load_task_file

    folder = tmp_path / "task"
    folder.mkdir()
    np.savez(tmp_path / "elsewhere.npz", X=sensor_data(30, 0)[0], y=sensor_data(30, 0)[1])
    for given in ("../elsewhere.npz", str(tmp_path / "elsewhere.npz")):
        path = write_task(folder, name="outside", splits={"train": given, "test": "data/test.npz"})
        with pytest.raises(ValueError, match=r"splits\.train: .* is outside the task file's "):
            load_task_file(path)
        assert load_task_file(path, allow_outside=True).name == "outside"
    assert main(["ingest", "--task-file", str(path), "--json"]) == 2
    assert "pass --allow-outside to read it there" in capsys.readouterr().err
    config = PipelineConfig.for_task(None, task_file=str(path), allow_outside=True)
    assert pickle.loads(pickle.dumps(config)).allow_outside


def test_a_symbolic_link_placed_in_the_folder_counts_as_inside(tmp_path):
    from orca.data.task_file import load_task_file

    data = tmp_path / "shared-data"
    folder = tmp_path / "task"
    folder.mkdir()
    data.mkdir()
    write_task(data, name="linked")  # writes data/train.npz, data/test.npz under shared-data
    (folder / "data").symlink_to(data / "data")
    path = write_task(folder, name="linked", splits=None, data={})
    assert load_task_file(path).name == "linked"
