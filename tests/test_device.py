"""The `device` setting (orca.devices): every torch stage runs where the run says, records
where it ran, and scores in fp32 (orca.training.precision).

The CUDA cases run where torch sees a GPU and are skipped elsewhere; on a GPU machine
without Prefect and MLflow, benchmarks/gpu_check.py makes the same checks through the
stage functions.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cli.main import main
from orca.config.pipeline import PipelineConfig
from orca.config.stages import AlignConfig, ProxyConfig, RefineConfig
from orca.config.sweep import SweepConfig
from orca.stages import align as align_stage
from orca.stages import evaluate as evaluate_stage
from orca.stages import ingest as ingest_stage
from orca.stages import proxy as proxy_stage
from orca.stages import refine as refine_stage

ROOT = Path(__file__).resolve().parent.parent
CUDA = torch.cuda.is_available()
DEVICES_HERE = ["cpu", "cuda"] if CUDA else ["cpu"]
NEEDS_CUDA = pytest.mark.skipif(
    not CUDA, reason="no CUDA device here (benchmarks/gpu_check.py checks this on a GPU)"
)
TINY_ARGS = ["--set=proxy.max_examples=60", "--set=proxy.max_tokens=16"]
TINY_ARGS += ["--set=align.epochs=1", "--set=align.samples_per_class=8"]
TINY_ARGS += ["--set=refine.epochs=1", "--set=refine.batch_size=16", "--set=refine.probe_steps=0"]


def weights_metadata(path: str | Path) -> dict[str, str]:
    """The orca metadata a stage wrote into a safetensors file's header."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as handle:
        return json.loads(handle.metadata()["orca"])


def device_type(recorded: str) -> str:
    return torch.device(recorded).type


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "gunpoint", "--device", "gpu"], "device: unknown device 'gpu'"),
        (["bench", "--tasks", "gunpoint", "--device", "tpu"], "device: unknown device 'tpu'"),
        (["demo", "--device", "GPU"], "device: unknown device 'GPU'"),
    ],
)
def test_a_bad_device_is_named_with_the_choices(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "valid devices: auto, cpu, cuda" in err


@pytest.mark.skipif(CUDA, reason="this machine has CUDA: a cuda request is valid here")
def test_cuda_without_cuda_fails_before_any_work(capsys):
    assert main(["run", "gunpoint", "--device", "cuda", "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "device='cuda' cannot be met on this machine" in captured.err
    assert "valid devices: auto, cpu, cuda" in captured.err
    with pytest.raises(ValueError, match="device='cuda' cannot be met"):
        SweepConfig(tasks=("gunpoint",), methods=("orca",), seeds=1, device="cuda")


def test_the_config_keeps_the_name_and_resolves_it_where_asked():
    config = PipelineConfig.for_task("gunpoint", device="auto")
    assert config.device == "auto"  # a GPU worker given this config uses its GPU
    assert config.resolved_device == ("cuda" if CUDA else "cpu")
    assert PipelineConfig.from_dict(config.to_dict()) == config
    assert PipelineConfig.for_task("gunpoint", device="cpu").resolved_device == "cpu"
    sweep = SweepConfig(tasks=("gunpoint",), methods=("orca", "knn"), seeds=1, device="cpu")
    assert {run.device for run in sweep.runs()} == {"cpu"}


def _dense_model(backbone: str):
    """A Darcy model (dense 2D regression) with its scalers fitted on random inputs."""
    from orca.data.tasks import get_task
    from orca.model import create_model

    spec = get_task("darcy")
    model = create_model(spec, backbone, seed=0)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(24, *spec.input_shape, generator=generator)
    model.fit_scalers(x, torch.randn(24, *spec.input_shape, generator=generator))
    return model, x


def test_predict_is_fp32_whatever_autocast_the_caller_has(tiny_bert_dir):
    from orca.training.finetune import predict

    model, x = _dense_model(str(tiny_bert_dir))
    autocast_seen = []
    model.register_forward_pre_hook(
        lambda module, inputs: autocast_seen.append(torch.is_autocast_enabled("cpu"))
    )
    with torch.no_grad():
        plain = model.eval()(x)
    assert autocast_seen == [False] and plain.dtype == torch.float32
    with torch.autocast("cpu", dtype=torch.bfloat16):  # a caller's autocast does not reach it
        predicted = predict(model, x, batch_size=len(x))
    assert autocast_seen == [False, False]
    assert predicted.dtype == torch.float32 and predicted.device.type == "cpu"
    assert torch.equal(predicted, plain)


@NEEDS_CUDA
def test_fp32_evaluation_on_cuda_gives_the_cpus_metric(tiny_bert_dir):
    from orca.metrics import METRICS
    from orca.training.finetune import evaluate

    model, x = _dense_model(str(tiny_bert_dir))
    y = torch.randn(len(x), *x.shape[1:], generator=torch.Generator().manual_seed(1))
    metric = METRICS.get("relative_l2")
    on_cpu = evaluate(model, x, y, metric, batch_size=8)
    on_cuda = evaluate(model.to("cuda"), x, y, metric, batch_size=8)
    assert abs(on_cuda - on_cpu) <= 1e-6, (on_cpu, on_cuda)
    assert torch.backends.cudnn.allow_tf32  # the default, restored after evaluation


@pytest.fixture(scope="module")
def gunpoint_dataset(tmp_path_factory) -> dict:
    return ingest_stage.ingest("gunpoint", tmp_path_factory.mktemp("gunpoint"), seed=0)


@pytest.mark.parametrize("device", DEVICES_HERE)
def test_every_torch_stage_runs_on_the_selected_device(
    device, gunpoint_dataset, tiny_bert_dir, tmp_path
):
    backbone = str(tiny_bert_dir)
    proxy = proxy_stage.extract_proxy(
        backbone, ProxyConfig(max_examples=60, max_tokens=16), tmp_path / "proxy", device=device
    )
    assert device_type(proxy["device"]) == device

    in_use = []  # GPU memory held while stage 2 trains: the embedder and its data are there

    def on_epoch(epoch: int, distance: float) -> None:
        in_use.append(torch.cuda.memory_allocated() if device == "cuda" else 0)

    align_config = AlignConfig(epochs=2, samples_per_class=8, otdd_inner="sinkhorn")
    embedder = align_stage.align(
        "gunpoint", backbone, gunpoint_dataset, proxy, align_config, 2, tmp_path / "align", 0,
        on_epoch=on_epoch, device=device,
    )  # fmt: skip
    assert device_type(embedder["device"]) == device
    assert weights_metadata(embedder["path"])["device"] == embedder["device"]
    assert len(in_use) == 3 and (device == "cpu" or min(in_use) > 0)

    refine_config = RefineConfig(epochs=1, batch_size=16, probe_steps=0)
    model = refine_stage.refine(
        "gunpoint", backbone, gunpoint_dataset, embedder, refine_config, tmp_path / "refine", 0,
        device=device,
    )  # fmt: skip
    assert device_type(model["device"]) == device
    assert weights_metadata(model["path"])["device"] == model["device"]

    result = evaluate_stage.evaluate(
        "gunpoint", backbone, gunpoint_dataset, model, 0, device=device
    )
    assert device_type(result["device"]) == device
    assert 0.0 <= result["value"] <= 100.0 and result["test_rows"] == 150
    if device == "cuda":  # the same weights, evaluated in fp32 on the CPU
        on_cpu = evaluate_stage.evaluate("gunpoint", backbone, gunpoint_dataset, model, 0, "cpu")
        assert on_cpu["device"] == "cpu" and on_cpu["value"] == result["value"]


def test_orca_run_device_cpu_end_to_end(prefect_harness, tiny_bert_dir, tmp_path, capsys):
    from mlflow import MlflowClient
    from test_task_file import write_task

    from runtime.state import StateDir

    task_file = write_task(tmp_path, name="device-task")
    argv = ["run", "--task-file", str(task_file), "--backbone", str(tiny_bert_dir), *TINY_ARGS]
    assert main([*argv, "--device", "cpu", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    states = summary["states"]  # the proxy features may come Cached from an earlier test
    assert states["proxy"] in ("Completed", "Cached"), states
    assert {states[s] for s in ("ingest", "align", "refine", "evaluate")} == {"Completed"}, states
    assert weights_metadata(summary["model_path"])["device"] == "cpu"
    embedders = [
        weights_metadata(path)
        for path in (StateDir.from_env().artifacts / "align").glob("*/embedder.safetensors")
    ]
    assert [meta["device"] for meta in embedders if meta["task"] == "device-task"] == ["cpu"]
    data = MlflowClient().get_run(summary["mlflow_run_id"]).data
    assert data.params["device"] == "cpu"
    for stage in ("proxy", "align", "refine", "evaluate"):  # where each torch stage ran
        assert data.tags[f"stage.{stage}.device"] == "cpu", stage
    assert math.isfinite(summary["value"])

    # The cache keys the device a stage ran on, not the name asked for: on this machine
    # "auto" means the CPU when it has no GPU, and every stage then comes from the cache.
    assert main([*argv, "--device", "auto", "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    expected = "Cached" if not CUDA else "Completed"
    assert {again["states"][stage] for stage in ("proxy", "align", "refine")} == {expected}
    assert again["value"] == summary["value"] or CUDA


# Run as a GPU machine has it: Prefect, MLflow and POT cannot be imported.
WITHOUT_FRAMEWORKS = """
import importlib.abc, runpy, sys
class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in ("prefect", "mlflow", "ot"):
            raise ModuleNotFoundError(f"No module named {name!r}")
sys.meta_path.insert(0, Absent())
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_gpu_check_runs_every_stage_without_prefect_mlflow_or_pot(tiny_bert_dir):
    script = ROOT / "benchmarks" / "gpu_check.py"
    argv = [str(script), "--device", "cpu", "--tiny", "--backbone", str(tiny_bert_dir), "--json"]
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_FRAMEWORKS, *argv],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert set(report["tasks"]) == {"gunpoint", "darcy"}
    for task, out in report["tasks"].items():
        assert list(out["runs"]) == ["cpu"], task  # --device cpu: no second run to compare
        stages = out["runs"]["cpu"]
        assert list(stages) == ["proxy", "align", "refine", "evaluate"]
        assert all(
            row["device"] == "cpu" and row["examples_per_second"] > 0 for row in stages.values()
        )
        assert math.isfinite(stages["evaluate"]["value"]) and stages["evaluate"]["examples"] > 0
    assert report["tasks"]["darcy"]["runs"]["cpu"]["evaluate"]["metric"] == "test relative_l2"
