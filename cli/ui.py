"""`orca ui`: the Prefect UI and the MLflow UI over the state directory, until stopped.

    orca ui [--host HOST] [--prefect-port P] [--mlflow-port Q] [--json]

Starts two servers as child processes, on 127.0.0.1 unless --host says otherwise:
`prefect server start` (PREFECT_HOME: the state directory's prefect/, so its database holds
the flow runs of earlier orca commands) and `mlflow server` (the state's mlflow.db; files
logged through this server go to mlartifacts/). Once both answer their health checks, the
two URLs are printed (with --json, then one JSON line with `prefect_url` and `mlflow_url`),
and it runs until Ctrl-C or SIGTERM, when both servers are stopped. Their logs go to
logs/prefect-server.log and logs/mlflow-server.log under the state directory.

Ports are checked first: one already in use fails at once (exit status 2) and is named.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime.state import StateDir

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PREFECT_PORT = 4200
DEFAULT_MLFLOW_PORT = 5000
STARTUP_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 15.0
# Hosts that bind every interface: the servers are reached through the loopback address.
WILDCARD_HOSTS = {"0.0.0.0": "127.0.0.1", "::": "::1"}
UI_API_URL_VARIABLES = ("PREFECT_UI_API_URL", "PREFECT_SERVER_UI_API_URL")


def add_parser(commands) -> None:
    ui = commands.add_parser(
        "ui",
        help="serve the Prefect and MLflow UIs over the state directory until Ctrl-C",
        description=(
            "Start the Prefect server and the MLflow UI on this state directory's databases, "
            "print their URLs, and run until Ctrl-C or SIGTERM, which stops both."
        ),
    )
    ui.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help=f"interface both servers listen on (default {DEFAULT_HOST}; the UIs have no "
        "login, so bind another interface only on a trusted network)",
    )
    ui.add_argument(
        "--prefect-port",
        type=int,
        default=DEFAULT_PREFECT_PORT,
        metavar="PORT",
        help=f"port of the Prefect UI and API (default {DEFAULT_PREFECT_PORT})",
    )
    ui.add_argument(
        "--mlflow-port",
        type=int,
        default=DEFAULT_MLFLOW_PORT,
        metavar="PORT",
        help=f"port of the MLflow UI (default {DEFAULT_MLFLOW_PORT})",
    )
    ui.add_argument(
        "--json",
        action="store_true",
        help="once both answer, print one JSON line with prefect_url and mlflow_url",
    )


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


def prepare(args: argparse.Namespace) -> UIOptions:
    """Check the host and both ports before anything starts; ValueError says what is wrong."""
    ports = {"--prefect-port": args.prefect_port, "--mlflow-port": args.mlflow_port}
    for flag, port in ports.items():
        if not 1 <= port <= 65535:
            raise ValueError(f"{flag} {port}: a port is an integer from 1 to 65535")
    if args.prefect_port == args.mlflow_port:
        raise ValueError(
            f"--prefect-port and --mlflow-port are both {args.prefect_port}; "
            "the two servers need two ports"
        )
    host = args.host.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    for flag, port in ports.items():
        check_port_free(host, port, flag)
    return UIOptions(host, args.prefect_port, args.mlflow_port)


def check_port_free(host: str, port: int, flag: str) -> None:
    """Bind `host`:`port` as a server would (SO_REUSEADDR, so a closed connection's
    TIME_WAIT does not count); ValueError when the host is unknown or the port is taken."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, socket.AF_UNSPEC, socket.SOCK_STREAM
        )[0]
    except socket.gaierror as error:
        raise ValueError(f"--host {host!r} is not a usable address: {error.strerror}") from None
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as error:
            raise ValueError(
                f"port {port} on {host} is not available ({error.strerror}); "
                f"stop what uses it, or choose another with {flag}"
            ) from None


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


class _Stop(Exception):
    """SIGTERM or SIGHUP arrived: stop like Ctrl-C."""


def _raise_stop(signum: int, frame: Any) -> None:
    raise _Stop(signal.Signals(signum).name)


def run(args: argparse.Namespace, options: UIOptions) -> None:
    """Start both servers, print their URLs once they answer, and serve until stopped."""
    state = StateDir.from_env()
    servers = child_servers(options, state)
    stop_signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.getsignal(sig) for sig in stop_signals}
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_stop)
    failure = None
    try:
        for server in servers:
            server.start(server_environment(options), state.root)
        failure = _wait_until_healthy(servers)
        if failure is None:
            _announce(options, state, servers, args.json)
            failure = _serve(servers)
    except (KeyboardInterrupt, _Stop):
        pass
    finally:
        for sig in stop_signals:
            signal.signal(sig, signal.SIG_IGN)  # stopping is not to be interrupted
        for server in servers:
            server.stop()
        _say("orca ui: both servers stopped")
        for sig, handler in previous.items():
            if handler is not None:  # None: not set from Python, nothing to restore
                signal.signal(sig, handler)
    if failure is not None:
        _say(f"orca: error: {failure}")
        raise SystemExit(1)


def _say(message: str) -> None:
    """A line on stderr; nothing if stderr is gone (a closed terminal or pipe)."""
    with contextlib.suppress(OSError):
        print(message, file=sys.stderr, flush=True)


def _wait_until_healthy(servers: list[ChildServer]) -> str | None:
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


def _announce(
    options: UIOptions, state: StateDir, servers: list[ChildServer], as_json: bool
) -> None:
    prefect_url = options.url(options.prefect_port)
    mlflow_url = options.url(options.mlflow_port)
    print(f"Prefect UI: {prefect_url}")
    print(f"MLflow UI:  {mlflow_url}")
    print(f"state: {state.root}; server logs: {servers[0].log_path.parent}")
    if not _is_loopback(options.host):
        _say(
            f"warning: listening on {options.host}: anyone who can reach this machine can "
            "use both UIs (they have no login)"
        )
    if options.host in WILDCARD_HOSTS:
        _say(
            f"note: the Prefect UI calls its API at {prefect_url}/api; for browsers on other "
            f"machines, set PREFECT_UI_API_URL=http://THIS-HOST:{options.prefect_port}/api"
        )
    print(
        "orca commands on this state directory show here as they run "
        f"(PREFECT_API_URL={prefect_url}/api sends them to this server)"
    )
    print("Ctrl-C stops both servers.")
    if as_json:
        print(json.dumps({"prefect_url": prefect_url, "mlflow_url": mlflow_url}))
    sys.stdout.flush()


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _serve(servers: list[ChildServer]) -> str | None:
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
