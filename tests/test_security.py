"""Security: no pickle from a user-supplied path, local-only servers, no secrets in records.

- Every loader of checkpoints, weights and benchmark files refuses a pickle that would run
  code, and the code it carries does not run.
- The source never calls an unrestricted unpickler (a scan of orca/, flows/ and tasks/).
- The Prefect server orca starts for its worker processes listens on 127.0.0.1.
- Tokens in the environment appear neither in MLflow params and tags nor in the logs.
"""

from __future__ import annotations

import ast
import io
import logging
import os
import pickle
from pathlib import Path

import pytest
import torch

from orca.checkpoint import CheckpointError
from orca.data.local_files import restricted_load
from orca.model.bodies import BodyWeightsError
from orca.model.vision_body import read_checkpoint
from orca.training.trainer_state import _read_trainer

REPO = Path(__file__).resolve().parents[1]
SECRET = "hf_SECRET_do_not_log_4242"


class _Payload:
    """Unpickling this runs os.system-like code: it creates the file named `marker`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _malicious(tmp_path: Path, name: str) -> tuple[Path, Path]:
    marker = tmp_path / f"{name}.ran"
    path = tmp_path / name
    torch.save({"model": _Payload(marker)}, path)  # a torch zip pickle holding the payload
    return path, marker


def test_trainer_state_refuses_a_code_carrying_pickle(tmp_path):
    path, marker = _malicious(tmp_path, "trainer.pt")
    with pytest.raises(CheckpointError, match=r"trainer\.pt: unreadable trainer state"):
        _read_trainer(path)
    assert not marker.exists()


def test_local_vision_weights_refuse_a_code_carrying_pickle(tmp_path):
    path, marker = _malicious(tmp_path, "weights.pth")
    with pytest.raises(BodyWeightsError, match=r"weights\.pth: not a readable checkpoint"):
        read_checkpoint(path)
    assert not marker.exists()


def test_benchmark_pickles_are_read_with_a_numpy_only_unpickler(tmp_path):
    marker = tmp_path / "bench.ran"
    with pytest.raises(pickle.UnpicklingError):
        restricted_load(io.BytesIO(pickle.dumps({"x": _Payload(marker)})))
    assert not marker.exists()
    import numpy as np

    data = {"images": np.arange(6, dtype=np.float32).reshape(2, 3), "labels": [1, 2]}
    loaded = restricted_load(io.BytesIO(pickle.dumps(data)))
    assert (loaded["images"] == data["images"]).all() and loaded["labels"] == [1, 2]


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            owner = (
                func.value.id
                if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name)
                else ""
            )
            keywords = {k.arg: k.value for k in node.keywords}
            yield owner, name, keywords, node.lineno


def test_the_source_never_unpickles_without_restriction():
    problems = []
    for package in ("orca", "flows", "tasks"):
        for path in sorted((REPO / package).rglob("*.py")):
            tree = ast.parse(path.read_text(), filename=str(path))
            for owner, name, keywords, line in _calls(tree):
                where = f"{path.relative_to(REPO)}:{line}"
                if owner == "torch" and name == "load":
                    flag = keywords.get("weights_only")
                    if not (isinstance(flag, ast.Constant) and flag.value is True):
                        problems.append(f"{where}: torch.load without weights_only=True")
                if owner in ("pickle", "cloudpickle", "dill", "joblib") and name in (
                    "load",
                    "loads",
                ):
                    problems.append(f"{where}: {owner}.{name}")
                if owner == "np" and name == "load":
                    flag = keywords.get("allow_pickle")
                    if isinstance(flag, ast.Constant) and flag.value is True:
                        problems.append(f"{where}: np.load(allow_pickle=True)")
    assert not problems, "\n".join(problems)


def test_the_shared_prefect_server_listens_on_localhost_only():
    from prefect.server.api.server import SubprocessASGIServer

    from runtime.prefect_api import shared_prefect_api

    with shared_prefect_api() as url:
        assert url.startswith("http://127.0.0.1:"), url
    assert SubprocessASGIServer().address.startswith("http://127.0.0.1:")


def test_tokens_in_the_environment_reach_neither_mlflow_nor_the_logs(
    tiny_bert_dir, prefect_harness, monkeypatch, capsys, caplog
):
    import mlflow

    from flows.pipeline import pipeline
    from orca.config.pipeline import PipelineConfig
    from runtime.prefect_api import shared_prefect_api

    for name in ("HF_TOKEN", "AWS_SECRET_ACCESS_KEY", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.setenv(name, SECRET)
    overrides = {"align": {"epochs": 1}, "refine": {"epochs": 1}, "proxy": {"max_examples": 64}}
    config = PipelineConfig.for_task("gunpoint", backbone=str(tiny_bert_dir), overrides=overrides)
    with shared_prefect_api():
        # Starting the in-process Prefect API configures logging again, which takes
        # pytest's capture handler off the root logger: put it back, and let INFO through
        # (the tests run Prefect at WARNING, conftest.py), so INFO lines are checked too.
        logging.getLogger().addHandler(caplog.handler)
        caplog.set_level(logging.INFO)
        caplog.set_level(logging.INFO, logger="prefect")
        result = pipeline(config, register_model=False)
    run = mlflow.get_run(result["mlflow_run_id"])
    recorded = {**run.data.params, **run.data.tags}
    leaks = {key: value for key, value in recorded.items() if SECRET in str(value)}
    assert not leaks
    assert len(run.data.params) > 10  # the config is logged: the check looked at something
    captured = capsys.readouterr()
    assert SECRET not in captured.out + captured.err
    assert SECRET not in caplog.text
    run_lines = [r for r in caplog.records if r.name.startswith("prefect.flow_runs")]
    assert any(r.levelno == logging.INFO for r in run_lines), "no INFO line was captured"
    assert os.environ["HF_TOKEN"] == SECRET
