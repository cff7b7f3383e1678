"""Two `orca bench` commands started at the same moment on one state directory, and two
processes logging to one MLflow store at once.

The commands run in the default `background` API mode (runtime/state_server.py), so they
share the state directory's one Prefect server; stage keys are locked across processes
(runtime/locks.py), so each stage is computed by one command and Cached for the other.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

from conftest import set_args, state_env

from runtime.state_server import STARTED_MESSAGE

REPO = Path(__file__).resolve().parents[1]
TINY = {
    "proxy": {"max_examples": 60, "max_tokens": 16},
    "align": {"epochs": 1, "samples_per_class": 8},
    "refine": {"epochs": 1, "batch_size": 16},
}
PROBLEMS = ("database is locked", "Traceback", "OperationalError")


def _bench(state: Path, bert: Path) -> subprocess.Popen[str]:
    overrides = set_args(TINY)
    command = [sys.executable, "-m", "cli.main", "bench", "--tasks", "gunpoint", "--methods"]
    command += ["orca", "--seeds", "1", "--backbone", str(bert), *overrides, "--json"]
    env = state_env(state, ORCA_PREFECT_API="background", OMP_NUM_THREADS="1")
    env.pop("PREFECT_API_URL", None)
    return subprocess.Popen(
        command, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def test_two_benches_at_once_share_one_server_and_compute_each_stage_once(tmp_path, tiny_bert_dir):
    state = tmp_path / "state"
    first, second = _bench(state, tiny_bert_dir), _bench(state, tiny_bert_dir)
    outputs = [process.communicate(timeout=600) for process in (first, second)]
    for process, (out, err) in zip((first, second), outputs, strict=True):
        assert process.returncode == 0, err[-3000:]
        summary = json.loads(out.strip().splitlines()[-1])
        assert (summary["runs"], summary["failures"]) == (1, [])
        assert not [problem for problem in PROBLEMS if problem in err], err[-3000:]
    log = (state / "prefect" / "server.log").read_text()
    assert log.count(STARTED_MESSAGE) == 1  # one helper started one server
    assert not [problem for problem in PROBLEMS if problem in log], log[-3000:]

    with sqlite3.connect(state / "prefect" / "prefect.db") as db:
        rows = db.execute(
            "SELECT flow_run.name, task_run.name, task_run.state_name FROM task_run "
            "JOIN flow_run ON flow_run.id = task_run.flow_run_id"
        ).fetchall()
        benches = db.execute("SELECT count(*) FROM flow_run WHERE parent_task_run_id IS NULL")
        assert benches.fetchone() == (2,)  # both benchmark flow runs are on the one server
    computed: dict[str, int] = {}
    for _, task_name, state_name in rows:
        stage = task_name.rsplit("-", 1)[0]
        computed[stage] = computed.get(stage, 0) + (state_name == "Completed")
    for stage in ("ingest", "proxy", "align", "refine", "evaluate", "pipeline-run"):
        assert computed.get(stage) == 1, (stage, rows)


MLFLOW_WRITER = textwrap.dedent(
    """
    import sys
    from mlflow import MlflowClient
    from mlflow.entities import Metric
    client = MlflowClient(sys.argv[1])
    experiment = client.get_experiment_by_name("load") or None
    experiment_id = experiment.experiment_id if experiment else None
    if experiment_id is None:
        try:
            experiment_id = client.create_experiment("load")
        except Exception:  # the other writer created it first
            experiment_id = client.get_experiment_by_name("load").experiment_id
    for run_index in range(int(sys.argv[2])):
        run = client.create_run(experiment_id, run_name=f"{sys.argv[3]}-{run_index}")
        for step in range(20):
            metrics = [Metric(f"m{k}", float(step * k), 0, step) for k in range(5)]
            client.log_batch(run.info.run_id, metrics=metrics)
        client.set_terminated(run.info.run_id)
    print("ok")
    """
)


def test_two_processes_log_to_one_mlflow_store_at_once(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    subprocess.run(  # the store exists first, as the server helper makes it
        [sys.executable, "-c", f"from mlflow import MlflowClient; MlflowClient({uri!r})"
         ".search_experiments()"], check=True, capture_output=True,
    )  # fmt: skip
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", MLFLOW_WRITER, uri, "6", name],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("a", "b")
    ]
    for writer in writers:
        out, err = writer.communicate(timeout=300)
        assert writer.returncode == 0 and out.strip() == "ok", err[-3000:]
        assert "database is locked" not in err
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("load").experiment_id])
    assert sorted(run.info.run_name for run in runs) == sorted(
        f"{name}-{i}" for name in ("a", "b") for i in range(6)
    )
    for run in runs:
        assert run.info.status == "FINISHED"
        assert len(client.get_metric_history(run.info.run_id, "m3")) == 20
