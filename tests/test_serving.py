"""Servable models: the registered pyfunc model loads without orca, serves JSON over HTTP
and reproduces the evaluate stage's outputs and metric; `orca predict`; results read back
as MLflow metrics.

One tiny sweep (gunpoint, the tiny BERT) crowned by `orca compare` is shared by the module.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest
import torch
from mlflow import MlflowClient

from cli.main import main

TINY = ["--set", "align.epochs=1", "--set", "refine.epochs=1", "--set", "proxy.max_examples=60"]


def _json_of(argv: list[str]) -> dict:
    """Run `orca ARGV --json` in this process; its one JSON object."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main([*argv, "--json"]) == 0
    return json.loads(out.getvalue())


@dataclass(frozen=True)
class Champion:
    name: str
    version: str
    uri: str
    x: np.ndarray  # the test split
    y: np.ndarray
    outputs: np.ndarray  # what the evaluate stage scores, recomputed as it computes them
    reported: float  # the evaluate stage's test error rate, as the run logged it


@pytest.fixture(scope="module")
def champion(prefect_harness, tiny_bert_dir, tmp_path_factory) -> Champion:
    from orca.stages.evaluate import load_trained_model
    from orca.training.finetune import predict
    from tasks.model_registry import ingested_split

    bench = ["bench", "--tasks", "gunpoint", "--methods", "orca", "--seeds", "1"]
    sweep = _json_of([*bench, "--backbone", str(tiny_bert_dir), *TINY])
    reports = tmp_path_factory.mktemp("reports")
    compare = _json_of(
        ["compare", "--sweep-run", sweep["sweep_run_id"], "--reports-dir", str(reports)]
    )
    name, number = compare["champions"]["gunpoint"].split("/")
    client = MlflowClient()
    run = client.get_run(client.get_model_version(name, number).run_id)
    test = ingested_split("gunpoint", "test")
    model = load_trained_model(
        "gunpoint", str(tiny_bert_dir), {"path": run.data.tags["orca.model_path"]}, seed=0
    )
    outputs = predict(model, torch.from_numpy(test.x), 64).numpy()
    return Champion(
        name,
        number,
        f"models:/{name}@champion",
        test.x,
        test.y,
        outputs,
        run.data.metrics["test_error_rate"],
    )


def _error_rate(outputs: np.ndarray, y: np.ndarray) -> float:
    from orca.metrics import METRICS

    return METRICS.get("error_rate").compute(outputs, y)


def test_the_champion_is_a_signed_pyfunc_with_pinned_requirements(champion):
    import mlflow

    info = mlflow.models.get_model_info(champion.uri)
    assert info.flavors["python_function"]["loader_module"] == "orca.serving.pyfunc"
    assert "pytorch" not in info.flavors
    inputs, outputs = info.signature.inputs.inputs[0], info.signature.outputs.inputs[0]
    assert (inputs.type, inputs.shape) == (np.dtype("float32"), (-1, 1, 150))
    assert (outputs.type, outputs.shape) == (np.dtype("float32"), (-1, 2))
    assert info.metadata["task"] == "gunpoint" and info.metadata["metric"] == "error_rate"
    requirements = Path(mlflow.pyfunc.get_model_dependencies(champion.uri)).read_text()
    for package in ("torch", "transformers", "numpy", "safetensors"):
        assert f"{package}=={version(package).split('+')[0]}" in requirements.splitlines()
    assert "orca" not in requirements
    # The run that registered it says so; its result is a metric, not only a tag.
    run = MlflowClient().get_run(
        MlflowClient().get_model_version(champion.name, champion.version).run_id
    )
    assert run.data.tags["registered_model"] == f"{champion.name}/{champion.version}"
    assert _error_rate(champion.outputs, champion.y) == pytest.approx(champion.reported)


LOAD_WITHOUT_ORCA = textwrap.dedent(
    """
    import importlib.util, os, sys

    # The editable install's finder and any path into the source tree go: orca can then
    # only come from the model's own code path.
    sys.meta_path[:] = [f for f in sys.meta_path if "__editable__" not in repr(f)]
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != sys.argv[3]]
    sys.path_importer_cache.clear()
    assert importlib.util.find_spec("orca") is None, importlib.util.find_spec("orca")

    import numpy as np
    import mlflow.pyfunc

    model = mlflow.pyfunc.load_model(sys.argv[1])
    with np.load(sys.argv[2]) as data:
        np.save(sys.argv[2] + ".out.npy", model.predict(data["x"]))
    print(sys.modules["orca"].__file__)
    """
)


def _child_env() -> dict[str, str]:
    """This process's environment (MLflow's tracking URI of the test state directory), the
    virtualenv's bin/ on PATH (mlflow models serve runs uvicorn from it), no PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    return env


def test_the_model_loads_without_orca_and_reproduces_the_evaluate_stage(champion, tmp_path):
    inputs = tmp_path / "test.npz"
    np.savez(inputs, x=champion.x)
    script = tmp_path / "load.py"
    script.write_text(LOAD_WITHOUT_ORCA)
    source_tree = str(Path(__file__).resolve().parent.parent)
    done = subprocess.run(
        [sys.executable, str(script), champion.uri, str(inputs), source_tree],
        cwd=tmp_path,
        env=_child_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    loaded_from = done.stdout.strip().splitlines()[-1]
    assert "/artifacts/code/orca/" in loaded_from and not loaded_from.startswith(source_tree)
    predictions = np.load(f"{inputs}.out.npy")
    assert predictions.dtype == np.float32
    np.testing.assert_allclose(predictions, champion.outputs, rtol=1e-5, atol=1e-5)
    assert _error_rate(predictions, champion.y) == pytest.approx(champion.reported)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def test_mlflow_models_serve_answers_json_with_the_same_predictions(champion, tmp_path):
    port = _free_port()
    command = [Path(sys.executable).parent / "mlflow", "models", "serve", "-m", champion.uri]
    command += ["--env-manager", "local", "-p", str(port)]
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen(
        command, cwd=tmp_path, env=_child_env(), stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: uvicorn goes with it
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while True:
            assert server.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            with contextlib.suppress(OSError):
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=5).close()
                break
            assert time.monotonic() < deadline, "mlflow models serve did not come up in 180 s"
            time.sleep(1)
        # JSON numbers arrive as float64; the signature makes them the model's float32.
        rows = champion.x[:20]
        answer = _post(f"http://127.0.0.1:{port}/invocations", {"inputs": rows.tolist()})
        served = np.asarray(answer["predictions"], dtype=np.float32)
        np.testing.assert_allclose(served, champion.outputs[:20], rtol=1e-5, atol=1e-5)
        with pytest.raises(urllib.error.HTTPError) as refused:  # one channel short
            _post(f"http://127.0.0.1:{port}/invocations", {"inputs": rows[:, 0].tolist()})
        assert refused.value.code == 400
    finally:
        with contextlib.suppress(ProcessLookupError):  # gone already: its log says why
            os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
        log.close()


def test_orca_predict_the_champion_with_targets_and_out(champion, tmp_path, capsys):
    inputs = tmp_path / "test.npz"
    np.savez(inputs, x=champion.x.astype(np.float64), y=champion.y)
    out = tmp_path / "preds" / "gunpoint.npz"
    result = _json_of(["predict", "gunpoint", str(inputs), "--out", str(out)])
    assert result["model"] == f"{champion.name}/{champion.version} (champion)"
    assert (result["task"], result["rows"], result["output_shape"]) == ("gunpoint", 150, [2])
    assert result["metric"] == "error_rate" and result["lower_is_better"] is True
    assert result["value"] == pytest.approx(champion.reported)
    with np.load(out) as saved:
        np.testing.assert_allclose(saved["predictions"], champion.outputs, rtol=1e-5, atol=1e-5)
        assert np.array_equal(saved["labels"], saved["predictions"].argmax(axis=1))
    assert not list(out.parent.glob(".*tmp*"))  # written atomically: no leftovers

    # The ingested split from the state directory, by URI; no targets, no score.
    uri = f"models:/{champion.name}/{champion.version}"
    split = _json_of(["predict", uri, "--split", "test"])
    assert split["input"] == "the test split of gunpoint"
    assert split["value"] == pytest.approx(champion.reported)
    np.savez(inputs, x=champion.x[:5])
    assert _json_of(["predict", uri, str(inputs)])["value"] is None
    assert main(["predict", "gunpoint", "--split", "test"]) == 0
    assert f"error_rate = {champion.reported:.4f} (lower is better)" in capsys.readouterr().out


def test_orca_predict_bad_input_exits_2_naming_it(champion, tmp_path, capsys):
    np.savez(tmp_path / "upper.npz", X=champion.x)
    np.savez(tmp_path / "flat.npz", x=champion.x[:, 0])
    np.savez(tmp_path / "short.npz", x=champion.x, y=champion.y[:3])
    cases = [
        (["gunpoint", f"{tmp_path}/absent.npz"], ["absent.npz: no such file", "'x' (N, 1, 150)"]),
        (["gunpoint", f"{tmp_path}/upper.npz"], ["upper.npz: no array 'x' (found: X)"]),
        (["gunpoint", f"{tmp_path}/flat.npz"], ["x has shape (150, 150)", "expects (N, 1, 150)"]),
        (["gunpoint", f"{tmp_path}/short.npz"], ["x has 150 rows but y 3"]),
        (["gunpoint", "--split", "tset"], ["unknown split; valid splits: train, validation, test"]),
        (["gunpoint"], ["give the inputs as INPUT.npz or as --split NAME"]),
        (["gunpnt", "--split", "test"], ["unknown task 'gunpnt'", "with a registered model: "]),
        (["ecg", "--split", "test"], ["task 'ecg' has no registered model orca-ecg"]),
        ([f"models:/{champion.name}/999", "--split", "test"], ["cannot be found", "orca-gunpoint"]),
    ]  # fmt: skip
    for argv, words in cases:
        assert main(["predict", *argv]) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("orca predict: error: ") and err.count("\n") == 1, err
        for word in words:
            assert word in err, (argv, err)
    client = MlflowClient()  # without a champion: the versions there are, and how to pick one
    client.delete_registered_model_alias(champion.name, "champion")
    try:
        assert main(["predict", "gunpoint", "--split", "test"]) == 2
        err = capsys.readouterr().err
        assert f"model {champion.name} has no 'champion' alias" in err
        assert f"models:/{champion.name}/" in err
    finally:
        client.set_registered_model_alias(champion.name, "champion", champion.version)


@pytest.mark.parametrize(
    ("task", "backbone"), [("digits", "test-tiny-swin"), ("darcy", "test-tiny-vit")]
)
def test_a_vision_package_builds_without_the_body_registry(task, backbone, tmp_path):
    """A package holds the architecture: the body's registered name is not needed to load it;
    the standardisation buffers travel with the weights (a dense task scales its targets)."""
    from orca.data.tasks import get_task
    from orca.model import create_model
    from orca.model.bodies import BODIES
    from orca.serving import ServedTask, write_package
    from orca.serving.package import predict
    from orca.serving.pyfunc import _load_pyfunc

    spec = get_task(task)
    model = create_model(spec, backbone, pretrained=False)
    x = torch.randn(8, *spec.input_shape) * 3 + 1
    y = torch.randn(8, *model.target_scaler.mean.shape) if model.target_scaler else None
    model.fit_scalers(x, y if y is not None else torch.zeros(8))
    write_package(tmp_path / "package", model, ServedTask.from_spec(spec), backbone, x[:2].numpy())
    registered = BODIES.unregister(backbone)
    try:
        served = _load_pyfunc(str(tmp_path / "package"))
    finally:
        BODIES.register(backbone, registered)
    assert np.array_equal(served.predict(x.numpy()), predict(model.eval(), x.numpy()))
    with pytest.raises(ValueError, match=r"expects \(N, " + ", ".join(map(str, spec.input_shape))):
        served.predict(x.numpy()[:, 0])


def test_sweep_results_read_the_metric_and_fall_back_to_the_tag(prefect_harness):
    from tasks.sweep_tracking import sweep_results
    from tasks.tracking import experiment_id

    client = MlflowClient()
    parent = client.create_run(experiment_id(client), tags={"orca.kind": "benchmark"}).info.run_id
    base = {"orca.benchmark_run": parent, "orca.method": "orca", "orca.backbone": "b",
            "orca.metric": "error_rate", "orca.lower_is_better": "True"}  # fmt: skip
    logged = {"new": (12.5, "99.0"), "old": (None, "30.0")}  # metric, tag orca.value
    for task, (metric, tag) in logged.items():
        tags = {**base, "orca.task": task, "orca.seed": "0", "orca.value": tag}
        run_id = client.create_run(experiment_id(client), tags=tags).info.run_id
        if metric is not None:
            client.log_metric(run_id, "test_error_rate", metric)
        client.set_terminated(run_id)
    values = {row["task"]: row["value"] for row in sweep_results.fn(parent)}
    assert values == {"new": 12.5, "old": 30.0}
