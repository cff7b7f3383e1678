"""The command's shared Prefect API (runtime/prefect_api.py) in its default `background` mode:
a helper process boots the server, and nothing outlives the command, even when killed."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest
from conftest import state_env

from runtime import prefect_api

ROOT = Path(__file__).resolve().parents[1]


def _background_env(state: Path) -> dict[str, str]:
    env = state_env(state, ORCA_PREFECT_API="background")
    env.pop("PREFECT_API_URL", None)
    return env


def _processes_of(state: Path) -> list[int]:
    """Live processes whose environment points at this state directory."""
    marker = f"ORCA_HOME={state}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            status = (entry / "status").read_text()
        except OSError:
            continue
        if marker in environ and "\nState:\tZ" not in status:
            found.append(int(entry.name))
    return found


def _wait_until_gone(
    state: Path, seconds: float = 30.0, among: set[int] | None = None
) -> list[int]:
    """The state's processes (only those in `among`, if given) still alive after waiting
    up to `seconds` for them to go."""
    deadline = time.monotonic() + seconds
    while True:
        left = [pid for pid in _processes_of(state) if among is None or pid in among]
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.2)


def _start_script(state: Path, script: str) -> subprocess.Popen[str]:
    """Run `script` in the background on `state`, reading its stdout."""
    return subprocess.Popen(
        [sys.executable, "-c", script],
        env=_background_env(state),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads process environments in /proc")
def test_command_runs_on_the_helper_server_and_leaves_nothing_behind(tmp_path):
    state = tmp_path / "state"
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "ingest", "digits", "--json"],
        env=_background_env(state),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1])["splits"]["train"]["rows"] > 0
    # The flow ran on the helper's server, which used this state's Prefect and MLflow files.
    assert (state / "prefect" / "prefect.db").is_file()
    assert (state / "mlflow.db").is_file()
    with sqlite3.connect(state / "prefect" / "prefect.db") as db:
        (states,) = db.execute("SELECT group_concat(state_name) FROM flow_run").fetchone()
    assert states == "Completed"
    assert _wait_until_gone(state) == []


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads process environments in /proc")
def test_killed_command_takes_its_server_down(tmp_path):
    state = tmp_path / "state"
    script = (
        "from runtime.state import activate; activate()\n"
        "from runtime import prefect_api\n"
        "prefect_api.boot()\n"
        "with prefect_api.shared_prefect_api() as url:\n"
        "    print(url, flush=True)\n"
        "    import time; time.sleep(600)\n"
    )
    process = _start_script(state, script)
    try:
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/api")
        assert len(_processes_of(state)) >= 3  # this one, the helper, the server
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        assert _wait_until_gone(state) == []
    finally:
        if process.poll() is None:
            process.kill()


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads process environments in /proc")
def test_command_that_dies_while_the_server_boots_leaves_nothing_behind(tmp_path):
    """The command exits (a crash, a Ctrl-C) after starting the helper but before the
    server answers: the helper cannot reply to it, and must still take the server down."""
    state = tmp_path / "state"
    script = (
        "import os, time\n"
        "from runtime.state import StateDir, activate; activate()\n"
        "from runtime import prefect_api\n"
        "prefect_api.boot()\n"
        "log = StateDir.from_env().prefect_home / 'server.log'\n"
        "while not log.exists(): time.sleep(0.01)  # the helper has been started\n"
        "os._exit(3)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], env=_background_env(state), cwd=ROOT, timeout=60
    )
    assert done.returncode == 3
    assert _processes_of(state) != []  # the helper, booting the server
    assert _wait_until_gone(state, seconds=120) == []
    assert not (state / "prefect" / "server.json").exists()


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads process environments in /proc")
def test_server_goes_down_with_a_killed_helper(tmp_path):
    state = tmp_path / "state"
    script = (
        "from runtime.state import activate; activate()\n"
        "from runtime.state_server import Connection\n"
        "print(Connection.wait(), flush=True)\n"
        "import time; time.sleep(600)\n"
    )
    process = _start_script(state, script)
    try:
        process.stdout.readline()
        helper = json.loads((state / "prefect" / "server.json").read_text())["pid"]
        others = set(_processes_of(state)) - {process.pid, helper}
        assert others, "the server process"
        os.kill(helper, signal.SIGKILL)
        assert _wait_until_gone(state, among=others) == []
    finally:
        process.kill()
        process.wait(timeout=10)
    assert _wait_until_gone(state) == []


def test_unknown_api_mode_names_the_variable_and_the_choices(monkeypatch):
    monkeypatch.setenv("ORCA_PREFECT_API", "threaded")
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    with pytest.raises(ValueError, match=r"\$ORCA_PREFECT_API='threaded'.*background, inline"):
        prefect_api.boot()


def test_a_new_state_starts_from_the_migrated_template(tmp_path, monkeypatch):
    from runtime import prefect_db

    template = prefect_db.make_template()  # made by `make bootstrap`, else here
    with sqlite3.connect(template) as db:
        (head,) = db.execute("SELECT version_num FROM alembic_version").fetchone()
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    assert {"flow_run", "task_run", "events", "artifact"} <= tables

    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect"))
    monkeypatch.delenv("PREFECT_API_DATABASE_CONNECTION_URL", raising=False)
    assert prefect_db.seed_state_database()
    seeded = tmp_path / "prefect" / "prefect.db"
    with sqlite3.connect(seeded) as db:
        assert db.execute("SELECT version_num FROM alembic_version").fetchone() == (head,)
        db.execute("CREATE TABLE mine (x)")  # an existing database is never replaced
    assert not prefect_db.seed_state_database()
    with sqlite3.connect(seeded) as db:
        assert db.execute("SELECT count(*) FROM sqlite_master WHERE name='mine'").fetchone()

    monkeypatch.setenv("PREFECT_API_DATABASE_CONNECTION_URL", "postgresql+asyncpg://db/prefect")
    assert prefect_db.state_database() is None  # another database: left to Prefect


def test_a_new_state_starts_from_the_mlflow_template(tmp_path, monkeypatch):
    from mlflow import MlflowClient

    from runtime import mlflow_db
    from runtime.state import StateDir

    template = mlflow_db.make_template()  # made by `make bootstrap`, else here
    with closing(sqlite3.connect(template)) as db:
        (head,) = db.execute("SELECT version_num FROM alembic_version").fetchone()

    state = StateDir(tmp_path / "state").create()
    uri = state.mlflow_uri
    monkeypatch.setenv("ORCA_HOME", str(state.root))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    assert not mlflow_db.is_ready()
    assert mlflow_db.seed_state_database() and mlflow_db.is_ready()
    store = state.root / "mlflow.db"
    with closing(sqlite3.connect(store)) as db:
        assert db.execute("SELECT version_num FROM alembic_version").fetchone() == (head,)
    # MLflow opens the copy as its own store (no migration), and it keeps the Default
    # experiment's artifacts in the state directory, not under the working directory.
    client = MlflowClient(uri)
    default = client.get_experiment("0")
    assert default.artifact_location == (state.mlflow_artifacts / "0").as_uri()
    run = client.create_run("0", run_name="seeded")
    client.log_metric(run.info.run_id, "x", 1.5)
    assert client.get_run(run.info.run_id).data.metrics == {"x": 1.5}
    assert not mlflow_db.seed_state_database()  # an existing store is never replaced
    assert client.get_run(run.info.run_id).info.run_name == "seeded"
    assert sorted(path.name for path in state.root.iterdir() if path.name.startswith(".")) == []

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking.example:5000")
    assert mlflow_db.state_database() is None and not mlflow_db.is_ready()


def test_heartbeats_are_off_unless_the_user_set_their_frequency(monkeypatch):
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    for name in prefect_api.HEARTBEAT_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    off = prefect_api.heartbeats_off()
    assert off == {PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}
    with temporary_settings(updates=off):
        assert PREFECT_FLOWS_HEARTBEAT_FREQUENCY.value() is None
    monkeypatch.setenv("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", "60")  # someone watches them
    assert prefect_api.heartbeats_off() == {}


@pytest.mark.parametrize("immediate", [True, False])
def test_state_server_transactions_take_the_write_lock_when_they_begin(tmp_path, immediate):
    """The state server's database transactions begin IMMEDIATE (runtime/prefect_db.py): one
    that has begun holds SQLite's write lock, so another writer waits for it instead of
    failing later. Prefect's own configuration (the contrast) begins them DEFERRED."""
    import asyncio

    import sqlalchemy as sa
    from prefect.server.database.configurations import AioSqliteConfiguration

    from runtime import prefect_db

    path = tmp_path / "prefect.db"
    url = f"{prefect_db.SQLITE_URL_PREFIX}{path}"
    config = (
        prefect_db.immediate_sqlite_configuration(url)
        if immediate
        else AioSqliteConfiguration(connection_url=url)
    )

    def another_writer_can_begin() -> bool:
        with closing(sqlite3.connect(path, timeout=0, isolation_level=None)) as other:
            try:
                other.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as error:
                assert "locked" in str(error)
                return False
            other.execute("ROLLBACK")
            return True

    async def scenario() -> tuple[bool, bool]:
        engine = await config.engine()
        try:
            session = await config.session(engine)
            async with session, config.begin_transaction(session):
                await session.execute(sa.text("SELECT 1"))  # a read, as Prefect's begin
                during = another_writer_can_begin()
            return during, another_writer_can_begin()
        finally:
            await engine.dispose()

    during, after = asyncio.run(scenario())
    assert during is not immediate
    assert after
