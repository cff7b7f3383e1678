"""`orca ui`: the Prefect UI and the MLflow UI over the state directory, until stopped.

    orca ui [--host HOST] [--prefect-port P] [--mlflow-port Q] [--json]

Starts two servers as child processes, on 127.0.0.1 unless --host says otherwise:
`prefect server start` (PREFECT_HOME: the state directory's prefect/, so its database holds
the flow runs of earlier orca commands) and `mlflow server` (the state's mlflow.db; files
logged through this server go to mlartifacts/). In team mode (ORCA_DATABASE_URL,
runtime/team_db.py) both serve the team's PostgreSQL database instead, so they show every
machine's runs. Once both answer their health checks, the
two URLs are printed (with --json, only one JSON object with `prefect_url` and `mlflow_url`
goes to stdout, the rest to stderr), and it runs until Ctrl-C or SIGTERM, when both servers
are stopped. Their logs go to logs/prefect-server.log and logs/mlflow-server.log under the
state directory.

Ports are checked first: one already in use fails at once (exit status 2) and is named.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import signal
import socket
import sys
from typing import Annotated, Any

import typer

from cli.command import Args, Command, CommandFailed
from cli.options import Json
from cli.ui_servers import (
    WILDCARD_HOSTS,
    ChildServer,
    UIOptions,
    child_servers,
    serve_until_one_exits,
    server_environment,
    wait_until_healthy,
)
from runtime.state import StateDir

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PREFECT_PORT = 4200
DEFAULT_MLFLOW_PORT = 5000


def define_ui(
    host: Annotated[
        str,
        typer.Option(
            metavar="HOST",
            help="interface both servers listen on (the UIs have no login, so bind another "
            "interface only on a trusted network)",
        ),
    ] = DEFAULT_HOST,
    prefect_port: Annotated[
        int, typer.Option(metavar="PORT", help="port of the Prefect UI and API")
    ] = DEFAULT_PREFECT_PORT,
    mlflow_port: Annotated[
        int, typer.Option(metavar="PORT", help="port of the MLflow UI")
    ] = DEFAULT_MLFLOW_PORT,
    json: Json = False,
) -> Args:
    """Serve the Prefect and MLflow UIs over the state directory until Ctrl-C or SIGTERM,
    which stops both."""
    return Args(**locals())


def prepare(args: Args) -> UIOptions:
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


class _Stop(Exception):
    """SIGTERM or SIGHUP arrived: stop like Ctrl-C."""


def _raise_stop(signum: int, frame: Any) -> None:
    raise _Stop(signal.Signals(signum).name)


def run(args: Args, options: UIOptions) -> None:
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
        failure = wait_until_healthy(servers)
        if failure is None:
            _announce(options, state, servers, args.json)
            failure = serve_until_one_exits(servers)
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
        raise CommandFailed(failure)


def _say(message: str) -> None:
    """A line on stderr; nothing if stderr is gone (a closed terminal or pipe)."""
    with contextlib.suppress(OSError):
        print(message, file=sys.stderr, flush=True)


def _announce(
    options: UIOptions, state: StateDir, servers: list[ChildServer], as_json: bool
) -> None:
    """The URLs and how to use them: on stdout, or with --json on stderr, stdout getting
    one JSON object with the two URLs."""
    prefect_url = options.url(options.prefect_port)
    mlflow_url = options.url(options.mlflow_port)
    out = sys.stderr if as_json else sys.stdout
    print(f"Prefect UI: {prefect_url}", file=out)
    print(f"MLflow UI:  {mlflow_url}", file=out)
    print(f"state: {state.root}; server logs: {servers[0].log_path.parent}", file=out)
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
        f"(PREFECT_API_URL={prefect_url}/api sends them to this server)",
        file=out,
    )
    print("Ctrl-C stops both servers.", file=out)
    if as_json:
        print(json.dumps({"prefect_url": prefect_url, "mlflow_url": mlflow_url}))
    out.flush()
    sys.stdout.flush()


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


COMMANDS = {"ui": Command(define_ui, prepare, run)}
