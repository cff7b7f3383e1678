"""Beyond one process: the benchmark on a Dask cluster, cache records at an fsspec URL,
and refine on several torchrun processes (gloo on CPU)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import cached_stage_flow
from mlflow import MlflowClient

from cli.main import main
from orca.manifest import MANIFEST_NAME
from runtime.runners import RunnerOptions, TaskRunnerSpec
from runtime.state import check_result_storage
from tasks.storage import block_name

REPO = Path(__file__).resolve().parents[1]
TINY = [
    "--set",
    "proxy.max_examples=60",
    "--set",
    "proxy.max_tokens=16",
    "--set",
    "align.epochs=1",
    "--set",
    "align.samples_per_class=8",
    "--set",
    "refine.epochs=1",
]


def test_runner_options_name_the_bad_value():
    with pytest.raises(ValueError, match=r"runner='ray' is not a valid choice; .* 'dask', 'local'"):
        RunnerOptions(runner="ray")
    with pytest.raises(ValueError, match="needs runner='dask'"):
        RunnerOptions(runner="local", dask_address="tcp://127.0.0.1:8786")
    assert main(["bench", "--tasks", "gunpoint", "--runner", "ray"]) == 2
    missing = TaskRunnerSpec(open=None, requires="no_such_module", extra="ray")
    with pytest.raises(ValueError, match=r"install it with: pip install 'orca-xmodal\[ray\]'"):
        missing.check_installed("ray")


def test_bench_on_a_local_dask_cluster(prefect_harness, tiny_bert_dir, state_root, capsys):
    argv = ["bench", "--tasks", "gunpoint", "--methods", "no-align", "fpt", "--seeds", "1"]
    dask = ["--runner", "dask", "--workers", "2", "--threads", "1"]
    assert main([*argv, "--backbone", str(tiny_bert_dir), *TINY, *dask, "--json"]) == 0
    bench = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert bench["runs"] == 2 and bench["failures"] == [], bench["failures"]
    # The Dask workers wrote to this session's MLflow store and state directory.
    client = MlflowClient()
    children = client.search_runs(
        [client.get_run(bench["sweep_run_id"]).info.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{bench['sweep_run_id']}'",
    )
    assert sorted(c.data.tags["orca.method"] for c in children) == ["fpt", "no-align"]
    for child in children:
        assert Path(child.data.tags["orca.model_path"]).is_relative_to(state_root)


def test_workers_of_an_existing_cluster_get_the_flows_environment(state_root):
    from distributed import Client, LocalCluster

    from runtime.runners import open_task_runner

    elsewhere = {"ORCA_HOME": "/nowhere", "MLFLOW_TRACKING_URI": "sqlite:////nowhere.db"}
    cluster = LocalCluster(n_workers=1, processes=True, dashboard_address=None, env=elsewhere)
    with cluster, Client(cluster.scheduler_address) as client:
        (before,) = client.run(os.getenv, "ORCA_HOME").values()
        options = RunnerOptions(runner="dask", dask_address=cluster.scheduler_address)
        with open_task_runner(options):
            (home,) = client.run(os.getenv, "ORCA_HOME").values()
            (tracking,) = client.run(os.getenv, "MLFLOW_TRACKING_URI").values()
    assert before == "/nowhere"  # as the worker was started, before the benchmark's runner
    assert home == str(state_root)
    assert tracking == os.environ["MLFLOW_TRACKING_URI"]


@pytest.mark.parametrize(
    ("location", "message"),
    [
        ("memory://records", "memory:// is private to one process"),
        ("nope://bucket/records", "Protocol not known: nope"),
        ("file://otherhost/records", "a file:// URL names no host"),
    ],
)
def test_a_bad_result_storage_fails_before_any_work(location, message, capsys):
    assert main(["--result-storage", location, "tasks"]) == 2
    assert message in capsys.readouterr().err


def test_result_storage_locations():
    assert check_result_storage("file:///tmp/x/../records") == "/tmp/records"
    assert check_result_storage("records") == str(Path("records").resolve())
    assert block_name("s3://bucket/a") != block_name("s3://bucket/b")
    if importlib.util.find_spec("s3fs") is None:
        with pytest.raises(ValueError, match="Install s3fs to access S3"):
            check_result_storage("s3://bucket/records")


def test_cache_records_at_a_file_url_are_read_back_as_cached(prefect_harness, tmp_path):
    from prefect.settings import PREFECT_API_URL
    from test_task_file import write_task

    (tmp_path / "task").mkdir()
    task_file = write_task(tmp_path / "task", name="storage-task")
    records = tmp_path / "records"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_"))}
    env.update(ORCA_HOME=str(tmp_path / "state"), PREFECT_API_URL=PREFECT_API_URL.value())
    script = (
        "import json, sys; from runtime.state import activate; activate(None, sys.argv[1]); "
        "from flows.stage_flows import ingest_stage; "
        "from orca.config.pipeline import PipelineConfig; "
        "out = ingest_stage(PipelineConfig.for_task(None, task_file=sys.argv[2])); "
        "print(json.dumps(out['states']))"
    )
    command = [sys.executable, "-c", script, f"file://{records}", str(task_file)]
    states = []
    for _ in range(2):  # two processes: the second can only know the record from storage
        done = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-3000:]
        states.append(json.loads(done.stdout.strip().splitlines()[-1]))
    assert states == [{"ingest": "Completed"}, {"ingest": "Cached"}]
    (record,) = records.iterdir()
    assert record.name.startswith("ingest-")
    assert not (tmp_path / "state" / "results" / record.name).exists()  # only flow results


def test_records_at_a_remote_url_are_cached_and_dropped_with_their_artifacts(
    prefect_harness, monkeypatch
):
    import shutil

    import fsspec

    from tasks import storage
    from tasks.caching import stage_dir

    url = "memory://orca-tests/records"  # a RemoteFileSystem, as s3:// or gcs:// would be
    monkeypatch.setenv("ORCA_RESULT_STORAGE", url)
    slug = f"orca-retrying-remote-file-system/{storage.block_name(url)}"
    assert storage.result_storage() == slug
    run, calls = cached_stage_flow("storage-test")

    assert run(21) == ("Completed", {"double": 42})
    assert run(21) == ("Cached", {"double": 42})
    memory = fsspec.filesystem("memory")
    assert [Path(p).name.split("-")[0] for p in memory.ls("/orca-tests/records", detail=False)] == [
        "storage"
    ]
    shutil.rmtree(stage_dir("storage-test", {"value": 21}))  # its artifacts are gone
    assert run(21) == ("Completed", {"double": 42})
    assert calls == [21, 21]


def _refine_inputs(tmp_path: Path, bert_dir: Path) -> tuple[dict, dict]:
    """Random GunPoint-shaped splits (12 train, 4 validation) and an embedder file."""
    import numpy as np

    from orca.checkpoint import save_state
    from orca.data.arrow_io import write_split
    from orca.data.tasks import get_task
    from orca.model import create_model

    spec = get_task("gunpoint")
    rng = np.random.default_rng(0)
    splits = {}
    for name, rows in (("train", 12), ("validation", 4)):
        x = rng.standard_normal((rows, *spec.input_shape)).astype(np.float32)
        write_split(tmp_path / f"{name}.arrow", x, np.arange(rows) % 2, {})
        splits[name] = {"path": str(tmp_path / f"{name}.arrow")}
    embedder = tmp_path / "embedder.safetensors"
    save_state(embedder, create_model(spec, str(bert_dir), seed=0).embedder.state_dict())
    return {"splits": splits}, {"path": str(embedder)}


def test_refine_on_two_processes_with_gloo(tiny_bert_dir, tmp_path):
    from orca.checkpoint import load_state
    from orca.config.stages import RefineConfig
    from orca.stages.refine import checkpoints_for, refine

    dataset, embedder = _refine_inputs(tmp_path, tiny_bert_dir)
    config = RefineConfig(epochs=2, batch_size=4, lr=1e-4, processes=2, checkpoint_interval_s=0)
    out_dir = tmp_path / "refine-out"
    epochs = []
    reference = refine(
        "gunpoint", str(tiny_bert_dir), dataset, embedder, config, out_dir, 0, epochs.append
    )
    # Each epoch was reported here, in the stage's process, as the main rank finished it.
    assert [record.epoch for record in epochs] == [0, 1]
    assert [record["epoch"] for record in reference["history"]] == [0, 1]
    assert reference["processes"] == 2
    # DistributedDataParallel kept the two ranks' weights identical, bit for bit.
    first, second = reference["replica_weights"]
    assert first == second
    # One model file, by the main rank, and the stage's manifest of it; the checkpoints it
    # wrote each epoch are gone.
    assert sorted(p.name for p in out_dir.iterdir()) == [MANIFEST_NAME, "model.safetensors"]
    assert not checkpoints_for(out_dir).exists()
    assert all(torch.isfinite(v).all() for v in load_state(reference["path"]).values())


@pytest.mark.parametrize(("samples", "world_size"), [(12, 2), (13, 3), (2, 4)])
def test_each_rank_trains_on_the_share_distributed_sampler_gives_it(samples, world_size):
    from torch.utils.data import DistributedSampler

    from orca.training.replicas import Replicas

    order = torch.randperm(samples, generator=torch.Generator().manual_seed(0))
    shares = []
    for rank in range(world_size):
        sampler = DistributedSampler(range(samples), world_size, rank, shuffle=False)
        shares.append(Replicas(rank, world_size).shard(order))
        assert shares[-1].tolist() == order[list(sampler)].tolist()
    assert sorted(set(torch.cat(shares).tolist())) == list(range(samples))  # every sample
    assert Replicas(0, world_size).batch_size(16) * world_size >= 16


def test_refine_processes_is_validated():
    from orca.config.stages import RefineConfig

    with pytest.raises(ValueError, match=r"refine.processes=0 is out of range; expected >= 1"):
        RefineConfig(processes=0)
