"""prefect.yaml and deployments/ against a real local Prefect server.

One server for the module (`prefect server start`, its own PREFECT_HOME and database under a
temporary directory): the work pool is created and everything in prefect.yaml is deployed
with the documented commands, a run is triggered through the API and a process worker runs
it from this checkout, with orca's state in a temporary directory as well.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from runtime.state import StateDir

REPO = Path(__file__).resolve().parents[1]
PREFECT = [sys.executable, "-m", "prefect"]
POOL = "orca-gpu-process"
K8S_POOL = "orca-gpu-k8s"
PROCESS_TEMPLATE = REPO / "deployments" / "gpu-process-pool.json"
K8S_TEMPLATE = REPO / "deployments" / "k8s-gpu-pool.json"
SERVER_START_TIMEOUT_S = 90

# prefect.yaml's deployments, as "flow name/deployment name".
EXPECTED = {
    "orca-pipeline/pipeline",
    "orca-sweep/weekly-refresh",
    "orca-compare/compare",
    "orca-stage-ingest/ingest",
    "orca-stage-proxy/proxy",
    "orca-stage-align/align",
    "orca-stage-refine/refine",
    "orca-stage-evaluate/evaluate",
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _base_environment() -> dict[str, str]:
    """This process's environment without its Prefect, MLflow and orca settings."""
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PREFECT_", "MLFLOW_")) and key not in ("ORCA_HOME", "ORCA_REPO_DIR")
    }


def _tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _stop(process: subprocess.Popen) -> None:
    """Terminate the process group started for `process`, then kill it if it lingers."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    except ProcessLookupError:
        pass


@dataclass
class Server:
    api_url: str
    root: Path
    # For the CLI and the worker: this server, and orca's state under root. Without
    # ORCA_REPO_DIR: `prefect deploy` would write its value into the pull step.
    client_env: dict[str, str]
    orca_home: Path

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.api_url, timeout=30)

    def prefect(self, *args: str, cwd: Path = REPO, timeout: float = 120) -> str:
        """Run a prefect CLI command against this server; return its output; fail on error."""
        done = subprocess.run(
            [*PREFECT, *args],
            cwd=cwd,
            env=self.client_env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        output = done.stdout + done.stderr
        assert done.returncode == 0, f"prefect {' '.join(args)} failed:\n{output}"
        return output


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("prefect-server")
    port = _free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    server_env = {
        **_base_environment(),
        "PREFECT_HOME": str(root / "server-home"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_UI_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "WARNING",
    }
    log_path = root / "server.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            # --no-services: the scheduler, event persister etc. are not needed here.
            [
                *PREFECT,
                "server",
                "start",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--no-services",
            ],
            cwd=root,
            env=server_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, stopped as a whole
        )
        try:
            deadline = time.monotonic() + SERVER_START_TIMEOUT_S
            while True:
                if process.poll() is not None:
                    pytest.fail(
                        f"`prefect server start` exited with {process.returncode}:\n"
                        f"{_tail(log_path)}"
                    )
                try:
                    if httpx.get(f"{api_url}/health", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"the Prefect server did not answer {api_url}/health within "
                        f"{SERVER_START_TIMEOUT_S} s:\n{_tail(log_path)}"
                    )
                time.sleep(0.25)
            orca_home = root / "orca-state"
            client_env = {
                **_base_environment(),
                **StateDir(orca_home).create().environment(),
                "PREFECT_API_URL": api_url,
                "PREFECT_LOGGING_LEVEL": "INFO",
            }
            yield Server(api_url, root, client_env, orca_home)
        finally:
            _stop(process)


@pytest.fixture(scope="module")
def deployed(server: Server) -> dict[str, dict[str, Any]]:
    """The work pool created and prefect.yaml deployed, as documented; deployments by
    "flow/deployment" name, as the API returns them."""
    server.prefect(
        "work-pool", "create", POOL, "--type", "process",
        "--base-job-template", str(PROCESS_TEMPLATE),
    )  # fmt: skip
    output = server.prefect("deploy", "--all", "--no-prompt")
    with server.http() as http:
        flows = {f["id"]: f["name"] for f in http.post("/flows/filter", json={}).json()}
        deployments = http.post("/deployments/filter", json={}).json()
    by_name = {f"{flows[d['flow_id']]}/{d['name']}": d for d in deployments}
    assert set(by_name) == EXPECTED, output
    return by_name


def _create_flow_run(
    server: Server, deployment: dict[str, Any], parameters: dict
) -> httpx.Response:
    with server.http() as http:
        return http.post(
            f"/deployments/{deployment['id']}/create_flow_run", json={"parameters": parameters}
        )


def test_every_prefect_yaml_deployment_is_created_for_the_gpu_pool(deployed):
    declared = yaml.safe_load((REPO / "prefect.yaml").read_text())["deployments"]
    assert {d["name"] for d in declared} == {name.split("/")[1] for name in EXPECTED}
    for name, deployment in deployed.items():
        assert deployment["work_pool_name"] == POOL, name
        # The checkout is found on the worker at run time: no path of this machine is stored
        # (`prefect deploy` ran without ORCA_REPO_DIR set; with it, its value would be).
        assert deployment["pull_steps"] == [
            {
                "prefect.deployments.steps.set_working_directory": {
                    "directory": "{{ $ORCA_REPO_DIR }}"
                }
            }
        ], name
        assert str(REPO) not in json.dumps(deployment), name
        assert deployment["enforce_parameter_schema"] is True, name
    stage = deployed["orca-stage-align/align"]
    assert stage["entrypoint"] == "flows/stage_flows.py:align_stage"
    assert stage["parameter_openapi_schema"]["required"] == ["config"]
    assert "PipelineConfig" in stage["parameter_openapi_schema"]["definitions"]


def test_the_benchmark_refresh_runs_on_a_weekly_cron(deployed):
    refresh = deployed["orca-sweep/weekly-refresh"]
    assert [(s["schedule"], s["active"]) for s in refresh["schedules"]] == [
        ({"cron": "0 3 * * 1", "timezone": "UTC", "day_or": True}, True)
    ]
    assert refresh["parameters"] == {
        "config": {"suite": "demo", "seeds": 3, "name": "weekly-refresh"}
    }
    assert refresh["entrypoint"] == "flows/sweep.py:sweep"
    for name, deployment in deployed.items():
        if name != "orca-sweep/weekly-refresh":
            assert deployment["schedules"] == [], name


def test_the_server_rejects_parameters_that_break_the_config_schema(server, deployed):
    pipeline = deployed["orca-pipeline/pipeline"]
    with server.http() as http:
        runs_before = http.post("/flow_runs/count", json={}).json()
    bad_metric = {
        "config": {"task": "gunpoint", "backbone": "minilm-l6", "align": {"metric": "l3"}}
    }
    response = _create_flow_run(server, pipeline, bad_metric)
    assert response.status_code == 409
    assert response.json()["detail"] == (
        "Error creating flow run: Validation failed for field 'config.align.metric'. "
        "Failure reason: 'l3' is not one of ['otdd', 'mmd', 'l2', 'cosine']"
    )
    response = _create_flow_run(server, pipeline, {"config": {"task": "gunpoint"}})
    assert response.status_code == 409
    assert response.json()["detail"] == (
        "Error creating flow run: Validation failed for field 'config'. "
        "Failure reason: 'backbone' is a required property"
    )
    with server.http() as http:
        assert http.post("/flow_runs/count", json={}).json() == runs_before  # none created


def test_a_process_worker_runs_a_stage_and_fails_an_unknown_task(server, deployed):
    """A task name is only a string to the schema: the flow's own validation (PipelineConfig)
    rejects it when the run starts, before any stage runs."""
    ingest = deployed["orca-stage-ingest/ingest"]
    good = _create_flow_run(
        server, ingest, {"config": {"task": "breast-cancer", "backbone": "minilm-l6"}}
    )
    bad = _create_flow_run(
        server, ingest, {"config": {"task": "no-such-task", "backbone": "minilm-l6"}}
    )
    assert good.status_code == bad.status_code == 201, (good.text, bad.text)

    worker_dir = server.root / "worker"  # not the checkout: the pull step must find it
    worker_dir.mkdir()
    log_path = worker_dir / "worker.log"
    with log_path.open("w") as log:
        done = subprocess.run(
            [
                *PREFECT,
                "worker",
                "start",
                "--pool",
                POOL,
                "--type",
                "process",
                "--run-once",
                "--limit",
                "2",
            ],
            cwd=worker_dir,
            env={**server.client_env, "ORCA_REPO_DIR": str(REPO)},
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=180,
        )
    output = log_path.read_text(errors="replace")
    assert done.returncode == 0, output

    with server.http() as http:
        good_run = http.get(f"/flow_runs/{good.json()['id']}").json()
        bad_run = http.get(f"/flow_runs/{bad.json()['id']}").json()
    assert good_run["state"]["type"] == "COMPLETED", output
    assert bad_run["state"]["type"] == "FAILED", output
    message = bad_run["state"]["message"]
    assert message.startswith(
        "Validation of flow parameters failed with error: ParameterTypeError: "
        "Flow run received invalid parameters:\n - config: Value error, "
        "task: unknown task 'no-such-task'; valid tasks: "
    ), message
    assert "breast-cancer" in message  # the valid names are listed

    # The stage ran in the worker's orca state, and left its splits and cache record there.
    splits = list((server.orca_home / "artifacts" / "ingest").glob("ingest-*/train.arrow"))
    records = list((server.orca_home / "results").glob("ingest-*"))
    assert len(splits) == len(records) == 1, output
    assert "Task run 'ingest-" in output and "ingested breast-cancer" in output


def test_the_process_pool_template_sets_the_gpus_only_when_asked(server, deployed):
    from prefect.client.orchestration import PrefectClient
    from prefect.workers.process import ProcessJobConfiguration

    with server.http() as http:
        pool = http.get(f"/work_pools/{POOL}").json()
    template = json.loads(PROCESS_TEMPLATE.read_text())
    assert pool["type"] == "process"
    assert pool["base_job_template"] == template

    async def render(values: dict[str, Any]) -> ProcessJobConfiguration:
        async with PrefectClient(server.api_url) as client:
            return await ProcessJobConfiguration.from_template_and_values(
                template, values, client=client
            )

    chosen = asyncio.run(render({"cuda_visible_devices": "1", "env": {"EXTRA": "yes"}}))
    assert chosen.env == {"CUDA_VISIBLE_DEVICES": "1", "EXTRA": "yes"}
    assert chosen.stream_output is True
    assert asyncio.run(render({})).env == {}  # unset: the worker's own CUDA_VISIBLE_DEVICES


def test_the_kubernetes_pool_template_exposes_gpus_node_selector_and_tolerations(server):
    from prefect.utilities.templating import apply_values

    template = json.loads(K8S_TEMPLATE.read_text())
    with server.http() as http:  # the server validates placeholders against the variables
        created = http.post(
            "/work_pools/",
            json={"name": K8S_POOL, "type": "kubernetes", "base_job_template": template},
        )
    assert created.status_code == 201, created.text
    assert created.json()["base_job_template"] == template

    properties = template["variables"]["properties"]
    defaults = {name: p["default"] for name, p in properties.items() if "default" in p}

    def pod(values: dict[str, Any]) -> dict[str, Any]:
        rendered = apply_values(template["job_configuration"], {**defaults, **values})
        return rendered["job_manifest"]["spec"]["template"]["spec"]

    default = pod({})
    assert default["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert default["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert default["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]
    assert default["volumes"][0]["persistentVolumeClaim"] == {"claimName": "orca-state"}

    toleration = {"key": "gpu-pool", "operator": "Equal", "value": "a100", "effect": "NoSchedule"}
    chosen = pod(
        {
            "gpu_count": 4,
            "node_selector": {"gpu-type": "a100"},
            "tolerations": [toleration],
            "image": "registry.example.com/orca:1",
        }
    )
    container = chosen["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 4  # a number, not "4"
    assert container["image"] == "registry.example.com/orca:1"
    assert chosen["nodeSelector"] == {"gpu-type": "a100"}
    assert chosen["tolerations"] == [toleration]

    rendered = apply_values(template["job_configuration"], defaults)
    assert rendered["env"]["ORCA_HOME"] == "/var/lib/orca"
    assert rendered["env"]["PREFECT_RESULTS_LOCAL_STORAGE_PATH"] == "/var/lib/orca/results"
    assert rendered["env"]["ORCA_REPO_DIR"] == "/opt/orca"


def test_stage_flows_need_exactly_the_stages_their_inputs_come_from():
    from orca.stages.order import FAMILY_STAGES, stages_through

    assert stages_through("ingest") == ("ingest",)
    assert stages_through("proxy") == ("proxy",)  # proxy features do not depend on the task
    assert stages_through("align") == ("ingest", "proxy", "align")
    assert stages_through("refine") == ("ingest", "proxy", "align", "refine")
    assert stages_through("evaluate") == FAMILY_STAGES["orca"]
    assert stages_through("classical") == ("ingest", "classical")
    with pytest.raises(ValueError, match="valid stages: ingest, proxy"):
        stages_through("train")


def test_gpu_stages_carry_the_gpu_tag_where_they_use_a_gpu(monkeypatch):
    import torch

    from tasks import stages
    from tasks.tags import gpu_tags

    expected = {"gpu"} if torch.cuda.is_available() else set()
    assert stages.ingest.tags == set()
    for task in (stages.proxy_features, stages.align, stages.refine, stages.evaluate):
        assert task.tags == expected, task.name
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert gpu_tags() == ["gpu"]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_tags() == []
    monkeypatch.setenv("ORCA_GPU_TAG", "1")  # a work pool's job environment can force it
    assert gpu_tags() == ["gpu"]
    monkeypatch.setenv("ORCA_GPU_TAG", "yes")
    with pytest.raises(ValueError, match="ORCA_GPU_TAG must be 0 or 1; got 'yes'"):
        gpu_tags()


def test_stage_flows_validate_their_config():
    from flows import stage_flows

    flows = [
        stage_flows.ingest_stage,
        stage_flows.proxy_stage,
        stage_flows.align_stage,
        stage_flows.refine_stage,
        stage_flows.evaluate_stage,
    ]
    for flow in flows:
        assert flow.should_validate_parameters, flow.name
        with pytest.raises(Exception, match=re.escape("unknown task 'no-such-task'")):
            flow.validate_parameters({"config": {"task": "no-such-task", "backbone": "minilm-l6"}})
