"""A pipeline process killed (SIGKILL) in each of the five stages, then run again; and one
stopped by SIGTERM in refine (the last test; align's stop and SIGINT are in test_stop.py,
every stage x fault in benchmarks/fault_matrix.py).

Each case runs `orca run` in a fresh state directory with $ORCA_HOLD_STAGE (tasks/faults.py)
so that the process stops at a known point of one stage: when its outputs are written but
its cache record is not (refine: after the checkpoint of epoch 1 of 3). The test kills it
there from outside, runs the same command again, and checks that:

- the stages before the killed one come back Cached, the killed one and those after it
  Completed;
- refine resumes from its checkpoint (the MLflow tag refine.resumed_from_epoch);
- the test metric equals that of an uninterrupted run of the same config and seed;
- every cache record's files have the fingerprint the record gives, so no partial file
  was taken for a result.

The commands use this test process's Prefect server (PREFECT_API_URL), so that none of
them waits for a server of its own; their state directories are their own.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import set_args, state_env
from mlflow import MlflowClient

from orca.config.pipeline import PipelineConfig
from orca.data.arrow_io import read_split, write_split
from orca.fingerprint import fingerprint_file
from runtime import prefect_api
from tasks.faults import HOLD_FILE_ENV_VAR, HOLD_STAGE_ENV_VAR, hold_point

REPO = Path(__file__).resolve().parents[1]
TINY = {
    "proxy": {"max_examples": 60, "max_tokens": 16},
    "align": {"epochs": 2, "samples_per_class": 8},
    "refine": {"epochs": 3, "batch_size": 16, "lr": 5e-4, "checkpoint_interval_s": 0},
}
STAGES = ("ingest", "proxy", "align", "refine", "evaluate")
# Where each case stops: at the end of the stage's work, or refine after epoch 1 of 3.
HOLDS = {stage: stage for stage in STAGES} | {"refine": "refine@1"}


@pytest.fixture(scope="module")
def api_url():
    with prefect_api.shared_prefect_api() as url:
        yield url


@pytest.fixture(scope="module")
def uninterrupted(tiny_bert_dir, api_url) -> dict[str, Any]:
    """The same config and seed run straight through (in this process, one torch thread)."""
    from flows.pipeline import pipeline

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        config = PipelineConfig.for_task("gunpoint", backbone=str(tiny_bert_dir), overrides=TINY)
        return pipeline(config, register_model=False)
    finally:
        torch.set_num_threads(threads)


def _command(tiny_bert_dir: Path) -> list[str]:
    overrides = set_args(TINY)
    return [sys.executable, "-m", "cli.main", "run", "gunpoint", "--backbone",
            str(tiny_bert_dir), *overrides, "--json"]  # fmt: skip


def _env(state: Path, api_url: str, **extra: str) -> dict[str, str]:
    env = state_env(state, PREFECT_API_URL=api_url, OMP_NUM_THREADS="1", **extra)
    for name in (HOLD_STAGE_ENV_VAR, HOLD_FILE_ENV_VAR):  # only where `extra` sets them
        if name not in extra:
            env.pop(name, None)
    return env


def _kill_while_holding(command: list[str], env: dict[str, str], marker: Path) -> dict:
    process = subprocess.Popen(
        command, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 300
        while not marker.is_file():
            if process.poll() is not None:
                raise AssertionError(
                    f"exited {process.returncode}: {process.stderr.read()[-3000:]}"
                )
            assert time.monotonic() < deadline, "the stage never reached its hold point"
            time.sleep(0.1)
        held = json.loads(marker.read_text())
        assert held["pid"] == process.pid
        os.kill(process.pid, signal.SIGKILL)
        assert process.wait(timeout=30) == -signal.SIGKILL
        return held
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()


def _records(state: Path) -> list[Any]:
    """Every stage cache record's value under the state's result storage."""
    values = []
    for path in (state / "results").rglob("*"):
        if not path.is_file() or not path.name.startswith(tuple(f"{s}-" for s in STAGES)):
            continue  # another task's result, or a temporary file
        record = json.loads(path.read_text())
        value = record.get("result", record)
        values.append(json.loads(value) if isinstance(value, str) else value)
    return values


def _file_references(value: Any) -> list[tuple[str, str]]:
    """(path, fingerprint) of each file a reference names."""
    found = []
    if isinstance(value, dict):
        path, fingerprint = value.get("path"), value.get("fingerprint")
        if isinstance(path, str) and isinstance(fingerprint, str) and Path(path).is_file():
            found.append((path, fingerprint))
        for item in value.values():
            found.extend(_file_references(item))
    elif isinstance(value, list):
        for item in value:
            found.extend(_file_references(item))
    return found


# The training stages, where a kill loses the most: each case costs about 35 s on 2 cores.
# Every stage (ingest, proxy, evaluate too) x SIGKILL, SIGTERM and a damaged file is in the
# fault matrix, benchmarks/fault_matrix.py (about 8 min), run as a measurement.
KILLED_STAGES = ("align", "refine")


@pytest.mark.parametrize("stage", KILLED_STAGES)
def test_a_run_killed_in_a_stage_recomputes_from_that_stage(
    stage, tmp_path, tiny_bert_dir, api_url, uninterrupted
):
    state, marker = tmp_path / "state", tmp_path / "held.json"
    command = _command(tiny_bert_dir)
    hold = {HOLD_STAGE_ENV_VAR: HOLDS[stage], HOLD_FILE_ENV_VAR: str(marker)}
    held = _kill_while_holding(command, _env(state, api_url, **hold), marker)
    assert held["stage"] == stage

    again = subprocess.run(
        command, env=_env(state, api_url), cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert again.returncode == 0, again.stderr[-3000:]
    result = json.loads(again.stdout.strip().splitlines()[-1])
    position = STAGES.index(stage)
    expected = {name: "Cached" if i < position else "Completed" for i, name in enumerate(STAGES)}
    assert result["states"] == expected

    tags = (
        MlflowClient(f"sqlite:///{state / 'mlflow.db'}").get_run(result["mlflow_run_id"]).data.tags
    )
    assert tags["refine.resumed_from_epoch"] == ("1" if stage == "refine" else "None")
    # Same config, same seed, one thread each: the same metric (a discrete error rate).
    assert result["value"] == pytest.approx(uninterrupted["value"], abs=1e-9)
    assert result["model_path"] != uninterrupted["model_path"]  # not the same files

    files = [ref for record in _records(state) for ref in _file_references(record)]
    assert len(files) >= 4  # the Arrow splits, the proxy features, embedder, model
    for path, fingerprint in files:
        assert _content_fingerprint(Path(path), tmp_path / "rewritten.arrow") == fingerprint, path


def _content_fingerprint(path: Path, scratch: Path) -> str:
    """A file's fingerprint computed again from its bytes: for an Arrow split, the content
    hash its writer records (by reading the rows and writing them again)."""
    if path.suffix != ".arrow":
        return fingerprint_file(path)
    split = read_split(path)
    return write_split(scratch, split.x, split.y, {})


def test_the_hold_hook_checks_its_value(monkeypatch):
    monkeypatch.setenv(HOLD_STAGE_ENV_VAR, "refine@1")
    assert hold_point() == ("refine", 1)
    monkeypatch.setenv(HOLD_STAGE_ENV_VAR, "refine@last")
    with pytest.raises(ValueError, match=r"ORCA_HOLD_STAGE='refine@last'.*epoch number"):
        hold_point()
    monkeypatch.setenv(HOLD_STAGE_ENV_VAR, "fine-tune")
    with pytest.raises(ValueError, match=r"ORCA_HOLD_STAGE: unknown stage 'fine-tune'; valid"):
        hold_point()


MID_EPOCH_2 = "epoch-0001-batch-000001"  # refine's checkpoint after a step of epoch 2


def _signal_while_holding(command, env, marker, signum) -> subprocess.CompletedProcess:
    """Start `command`, send `signum` once it holds, and wait for it to end by itself."""
    process = subprocess.Popen(
        command, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 300
        while not marker.is_file():
            assert process.poll() is None, process.stderr.read()[-3000:]
            assert time.monotonic() < deadline, "the stage never reached its hold point"
            time.sleep(0.1)
        process.send_signal(signum)
        out, err = process.communicate(timeout=120)
        return subprocess.CompletedProcess(command, process.returncode, out, err)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


@pytest.mark.parametrize(
    ("signum", "hold", "where", "checkpoint", "resumed"),
    [
        (signal.SIGTERM, "refine@0", "in refine epoch 2, after batch 1", MID_EPOCH_2, "0"),
    ],
)  # fmt: skip
def test_a_signal_stops_training_at_a_safe_point_and_the_rerun_resumes(
    signum, hold, where, checkpoint, resumed, tmp_path, tiny_bert_dir, api_url, uninterrupted
):
    state, marker = tmp_path / "state", tmp_path / "held.json"
    command = _command(tiny_bert_dir)
    env = _env(state, api_url, **{HOLD_STAGE_ENV_VAR: hold, HOLD_FILE_ENV_VAR: str(marker)})
    stopped = _signal_while_holding(command, env, marker, signum)
    assert stopped.returncode == 128 + signum, stopped.stderr[-3000:]
    last = stopped.stderr.strip().splitlines()[-1]
    assert last.startswith(f"orca: stopped by {signal.Signals(signum).name} {where}")
    assert "run the same command again to resume" in last and "Traceback" not in stopped.stderr
    saved = Path(last.split("checkpoint in ")[1].split(". ")[0])
    assert saved.name == checkpoint and saved.is_dir()
    client = MlflowClient(f"sqlite:///{state / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert [run.info.status for run in runs] == ["KILLED"]

    again = subprocess.run(
        command, env=_env(state, api_url), cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert again.returncode == 0, again.stderr[-3000:]
    result = json.loads(again.stdout.strip().splitlines()[-1])
    stage = hold.split("@")[0]
    position = STAGES.index(stage)
    expected = {name: "Cached" if i < position else "Completed" for i, name in enumerate(STAGES)}
    assert result["states"] == expected
    tags = client.get_run(result["mlflow_run_id"]).data.tags
    assert tags["refine.resumed_from_epoch"] == resumed
    assert result["value"] == pytest.approx(uninterrupted["value"], abs=1e-9)
    assert not saved.exists()  # the stage cleared its checkpoints once done
