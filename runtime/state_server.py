"""One Prefect API server per state directory, shared by the `orca` commands that use it.

The first command that needs the API starts a helper process, `python -m
runtime.state_server`, which starts Prefect's API server as Prefect's ephemeral mode runs it
(uvicorn on 127.0.0.1); a new state directory's Prefect and MLflow databases are first
copied from migrated templates. The command goes on importing meanwhile. Commands that
start later on the same state directory, even at the same moment, find that server and use
it: one server writes the state's Prefect database, so two `orca bench` started together do
not fight over the SQLite file. The helper stops the server once no command is left.

Files under the state's Prefect home (all released by the kernel when a process dies, even
by SIGKILL, so a killed command leaves nothing running and nothing stale):

- server.clients: every command holds a shared lock on it while it runs; the helper polls
  for an exclusive lock, and when it gets one, no command is left and it stops;
- server.start.lock: held while a command looks for the server and, if there is none,
  while the helper it started brings one up, so that only one is started;
- server.json: {"api_url": ..., "pid": ...} of the running helper, written when its server
  answers and removed when it stops;
- server.log: the helper's and the server's output.
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import IO

from orca.atomic import atomic_path
from runtime import mlflow_db, team_db
from runtime.prefect_db import seed_state_database
from runtime.state import StateDir

POLL_SECONDS = 1.0
PR_SET_PDEATHSIG = 1  # linux/prctl.h
STARTED_MESSAGE = "Prefect API server started"  # in server.log, once per server


def _files() -> dict[str, Path]:
    home = StateDir.from_env().prefect_home
    home.mkdir(parents=True, exist_ok=True)
    names = ("server.clients", "server.start.lock", "server.json", "server.log")
    return {name.split(".", 1)[1]: home / name for name in names}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _running_server(record: Path) -> str | None:
    """The URL in server.json if its helper is alive and its server answers."""
    try:
        server = json.loads(record.read_text())
    except (OSError, ValueError):
        return None
    if not _alive(int(server.get("pid", 0))):
        return None
    try:  # urllib, not httpx: this runs in a thread while the main thread imports
        with urllib.request.urlopen(f"{server['api_url']}/health", timeout=10) as answer:
            healthy = answer.status == 200
    except OSError:
        return None
    return server["api_url"] if healthy else None


class Connection:
    """This process's use of its state directory's server (one per process)."""

    _lock = threading.Lock()
    _thread: threading.Thread | None = None
    _clients: IO[str] | None = None  # the shared lock, held until this process exits
    url: str | None = None
    error: str | None = None

    @classmethod
    def start(cls) -> None:
        """Find or start the server in a background thread (it mostly waits on locks and
        on the helper, so this process's own work goes on meanwhile)."""
        with cls._lock:
            if cls._thread is None:
                cls._thread = threading.Thread(target=cls._connect, daemon=True)
                cls._thread.start()

    @classmethod
    def wait(cls) -> str:
        cls.start()
        assert cls._thread is not None
        cls._thread.join()
        if cls.url is None:
            with cls._lock:
                cls._thread = None  # a later call tries again
            raise RuntimeError(f"the Prefect API server did not start: {cls.error}")
        return cls.url

    @classmethod
    def _connect(cls) -> None:
        try:
            files = _files()
            if cls._clients is None:
                cls._clients = open(files["clients"], "a")  # noqa: SIM115 (held until exit)
                fcntl.flock(cls._clients, fcntl.LOCK_SH)
            with open(files["start.lock"], "a") as start:
                fcntl.flock(start, fcntl.LOCK_EX)
                cls.url = _running_server(files["json"]) or _start_helper(files, start)
        except Exception as error:
            cls.error = f"{type(error).__name__}: {error}"


def _start_helper(files: dict[str, Path], start: IO[str]) -> str:
    """Start the helper; it keeps the start lock (inherited) until its server answers."""
    read_end, write_end = os.pipe()
    with open(files["log"], "a") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "runtime.state_server", str(start.fileno()), str(write_end)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            pass_fds=(start.fileno(), write_end),
            start_new_session=True,  # a Ctrl-C meant for the command does not reach it
        )
    os.close(write_end)
    with os.fdopen(read_end) as replies:
        line = replies.readline()
    try:
        reply = json.loads(line)
    except ValueError:
        reply = {"error": f"the helper exited with code {process.wait()}"}
    if "api_url" not in reply:
        raise RuntimeError(f"{reply['error']} (see {files['log']})")
    return reply["api_url"]


def ephemeral_app():
    """The uvicorn app factory: Prefect's API as its ephemeral mode serves it (the API and
    the services an ephemeral server runs, no UI), on this state directory's database,
    whose transactions take SQLite's write lock when they begin (runtime/prefect_db.py)."""
    from prefect.server.api.server import create_app

    from runtime.prefect_db import use_immediate_transactions

    use_immediate_transactions()
    return create_app(ephemeral=True, final=True)


class ApiServer:
    """`python -m uvicorn --factory runtime.state_server:ephemeral_app` on a free local port:
    what Prefect's SubprocessASGIServer runs, started here without importing Prefect's
    server into the helper, which meanwhile creates the MLflow store where no template could
    be copied."""

    def __init__(self, log: IO[str]) -> None:
        self.port = _free_port()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", "runtime.state_server:ephemeral_app",
             "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "error",
             "--lifespan", "on"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, preexec_fn=_exit_with_parent,
        )  # fmt: skip
        self.api_url = f"http://127.0.0.1:{self.port}/api"

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            code = self.process.poll()
            if code is not None:
                raise RuntimeError(f"the Prefect server exited with code {code}")
            try:
                with urllib.request.urlopen(f"{self.api_url}/health", timeout=5) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"the Prefect server did not answer within {timeout:.0f} s")
            time.sleep(0.1)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _exit_with_parent() -> None:
    """In the server's process, before it starts: where Linux allows, have the kernel send
    it SIGTERM when the helper dies, even by SIGKILL (prctl PR_SET_PDEATHSIG), so that no
    server outlives its helper."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: the helper's own stop() has to do
        pass


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def serve(start_fd: int, reply_fd: int) -> int:
    """The helper: bring the server up, publish it, serve until no command is left."""
    files = _files()
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    timeout = float(os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", 120))
    try:
        server = _bring_up(files["log"], timeout)
    except Exception as error:  # the command raises it
        _reply(reply_fd, {"error": f"{type(error).__name__}: {error}"})
        return 1
    try:
        with atomic_path(files["json"]) as tmp:
            tmp.write_text(json.dumps({"api_url": server.api_url, "pid": os.getpid()}))
        _log(files["log"], f"{STARTED_MESSAGE} at {server.api_url} (helper {os.getpid()})")
        os.close(start_fd)  # others may now find it
        _reply(reply_fd, {"api_url": server.api_url})
        with open(files["clients"], "a") as clients:
            while not stopping.wait(POLL_SECONDS):
                try:
                    fcntl.flock(clients, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a command still uses the server
                break  # none does; a command arriving now waits for the lock, then starts one
            files["json"].unlink(missing_ok=True)
    finally:
        server.stop()
        _log(files["log"], f"Prefect API server stopped (helper {os.getpid()})")
    return 0  # the lock on server.clients goes with this process


def _bring_up(log_path: Path, timeout: float) -> ApiServer:
    """The databases ready and the server answering. A new state starts from migrated
    copies (runtime/prefect_db.py, runtime/mlflow_db.py); a team database (PostgreSQL,
    runtime/team_db.py) is migrated by Prefect's server as it starts and by MLflow's store,
    under its first-use lock, so that two machines starting together do not both migrate."""
    with team_db.setup_lock():
        seed_state_database()
        mlflow_db.seed_state_database()
        with open(log_path, "a") as log:
            server = ApiServer(log)
        try:
            mlflow_db.prepare_store()  # where nothing was seeded, while the server starts
            server.wait_healthy(timeout)
        except BaseException:
            server.stop()
            _log(log_path, f"Prefect API server stopped (helper {os.getpid()})")
            raise
    return server


def _log(path: Path, message: str) -> None:
    with open(path, "a") as log:
        log.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} state server: {message}\n")


def _reply(reply_fd: int, message: dict[str, str]) -> None:
    """Answer the command that started the helper. If it has gone (killed, or failed while
    the server booted), the helper serves on: it stops as soon as no command is left."""
    try:
        os.write(reply_fd, (json.dumps(message) + "\n").encode())
    except OSError:
        pass
    finally:
        os.close(reply_fd)


if __name__ == "__main__":
    sys.exit(serve(int(sys.argv[1]), int(sys.argv[2])))
