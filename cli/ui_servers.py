"""The two servers of `orca ui` (cli/ui.py): Prefect's and MLflow's, as child processes.

Each server runs in a process group of its own, with its output in a log file under the
state directory's logs/, so that stopping it stops all of it and a failure can show the
end of its log.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from runtime.state import StateDir

STARTUP_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 15.0
# Hosts that bind every interface: the servers are reached through the loopback address.
WILDCARD_HOSTS = {"0.0.0.0": "127.0.0.1", "::": "::1"}
UI_API_URL_VARIABLES = ("PREFECT_UI_API_URL", "PREFECT_SERVER_UI_API_URL")


@dataclass(frozen=True)
class UIOptions:
    host: str
    prefect_port: int
    mlflow_port: int

    @property
    def client_host(self) -> str:
        """The address this machine reaches the servers at, as it goes in a URL."""
        host = WILDCARD_HOSTS.get(self.host, self.host)
        return f"[{host}]" if ":" in host else host

    def url(self, port: int) -> str:
        return f"http://{self.client_host}:{port}"


@dataclass
class ChildServer:
    """One server process, started in its own process group so that it stops as a whole."""

    name: str
    command: list[str]
    health_url: str
    log_path: Path
    process: subprocess.Popen | None = None

    def start(self, environment: dict[str, str], cwd: Path) -> None:
        with self.log_path.open("w") as log:
            self.process = subprocess.Popen(
                self.command,
                cwd=cwd,
                env=environment,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def healthy(self) -> bool:
        import httpx

        try:
            return httpx.get(self.health_url, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def exited(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def log_tail(self, lines: int = 20) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """SIGTERM to the whole process group, SIGKILL to what is left after a grace
        period: no server process outlives `orca ui`."""
        if self.process is None:
            return
        for sig, wait in ((signal.SIGTERM, STOP_TIMEOUT_S), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:  # the group is gone
                break
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and _group_alive(self.process):
                time.sleep(0.1)
            if not _group_alive(self.process):
                break
        self.process.wait(timeout=5)


def _group_alive(process: subprocess.Popen) -> bool:
    """Whether any process of `process`'s group still exists (its leader reaped if done)."""
    process.poll()
    try:
        os.killpg(process.pid, 0)
    except ProcessLookupError:
        return False
    return True


def child_servers(options: UIOptions, state: StateDir) -> list[ChildServer]:
    logs = state.root / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    prefect = [sys.executable, "-m", "prefect", "server", "start", "--ui"]
    mlflow = [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", state.mlflow_uri,
        "--artifacts-destination", str(state.mlflow_artifacts),
        "--workers", "1",
    ]  # fmt: skip
    return [
        ChildServer(
            "Prefect",
            [*prefect, "--host", options.host, "--port", str(options.prefect_port)],
            f"{options.url(options.prefect_port)}/api/health",
            logs / "prefect-server.log",
        ),
        ChildServer(
            "MLflow",
            [*mlflow, "--host", options.host, "--port", str(options.mlflow_port)],
            f"{options.url(options.mlflow_port)}/health",
            logs / "mlflow-server.log",
        ),
    ]


def server_environment(options: UIOptions) -> dict[str, str]:
    """orca's environment (activate() has run) for the servers. The Prefect UI must talk to
    the server it comes from: PREFECT_API_URL goes (it would point the UI elsewhere), and
    the UI's API URL is this server's unless PREFECT_UI_API_URL says otherwise (`prefect
    server start --port P` alone would leave the UI calling port 4200)."""
    environment = dict(os.environ)
    environment.pop("PREFECT_API_URL", None)
    if not any(name in environment for name in UI_API_URL_VARIABLES):
        environment["PREFECT_UI_API_URL"] = f"{options.url(options.prefect_port)}/api"
    environment["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    # MLflow's job runner (GenAI scorers and prompt optimisation: seven worker processes)
    # has nothing to do for orca.
    environment.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    return environment


def wait_until_healthy(servers: list[ChildServer]) -> str | None:
    """None once every server answers; else what went wrong, with the server's log tail."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    waiting = list(servers)
    while waiting:
        for server in list(waiting):
            code = server.exited()
            if code is not None:
                return (
                    f"the {server.name} server exited with status {code} before answering "
                    f"{server.health_url}; the end of {server.log_path}:\n{server.log_tail()}"
                )
            if server.healthy():
                waiting.remove(server)
        if waiting and time.monotonic() > deadline:
            names = " and ".join(server.name for server in waiting)
            return (
                f"the {names} server did not answer within {STARTUP_TIMEOUT_S:.0f} s; "
                f"see {', '.join(str(server.log_path) for server in waiting)}"
            )
        if waiting:
            time.sleep(0.25)
    return None


def serve_until_one_exits(servers: list[ChildServer]) -> str | None:
    """Wait while both servers run; what went wrong if one of them exits."""
    while True:
        for server in servers:
            code = server.exited()
            if code is not None:
                return (
                    f"the {server.name} server exited with status {code}; the end of "
                    f"{server.log_path}:\n{server.log_tail()}"
                )
        time.sleep(0.5)
