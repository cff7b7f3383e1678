"""Team mode (runtime/team_db.py): Prefect and MLflow on a real PostgreSQL server.

One PostgreSQL server, started for this module in a temporary directory (a free port on
127.0.0.1, its socket in that directory, password logins over TCP), holds a database owned
by the role orca logs in as. A two-worker `orca bench` with ORCA_DATABASE_URL pointing there
must leave its flow runs in the `prefect` schema and its MLflow runs in the `mlflow` schema,
and no SQLite database in the state directory. PostgreSQL refuses to run as root, so as root
the server runs as the `postgres` user. Skipped only where PostgreSQL's server binaries are
not installed (Debian: apt-get install postgresql).
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import psycopg2
import pytest
from conftest import state_env

from cli.main import main
from runtime.state import StateDir
from runtime.team_db import DATABASE_URL_ENV, TeamDatabase, TeamDatabaseError

REPO = Path(__file__).resolve().parents[1]
ROLE, PASSWORD, DATABASE = "team", "p@ss:w/rd%", "orca"  # characters a URL must escape
GUEST = "guest"  # may log in, may create no schema
TINY = [f"--set={setting}" for setting in (
    "proxy.max_examples=60", "proxy.max_tokens=16", "align.epochs=1",
    "align.samples_per_class=8", "refine.epochs=1",
)]  # fmt: skip


def _postgres_bin() -> Path | None:
    """The newest installed PostgreSQL's bin directory (initdb, pg_ctl), or None."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda path: [int(part) for part in path.parts[-3].split(".") if part.isdigit()],
    )
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _url(user: str, password: str, port: int, dbname: str = DATABASE) -> str:
    return (
        f"postgresql://{quote(user, safe='')}:{quote(password, safe='')}@127.0.0.1:{port}/{dbname}"
    )


@dataclass
class Postgres:
    """A running server: `port` on 127.0.0.1, its socket in `root`, superuser `postgres`."""

    root: Path
    port: int

    def url(self, user: str = ROLE, password: str = PASSWORD, dbname: str = DATABASE) -> str:
        return _url(user, password, self.port, dbname)

    def admin(self, dbname: str = "postgres"):
        connection = psycopg2.connect(
            host=str(self.root), port=self.port, user="postgres", dbname=dbname
        )
        connection.autocommit = True
        return connection


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    bin_dir = _postgres_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL's server binaries (initdb, pg_ctl) are not installed")
    as_user: list[str] = []
    owner = None
    if os.geteuid() == 0:  # PostgreSQL will not run as root
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.fail("as root, PostgreSQL must run as the 'postgres' user, which is missing")
        as_user = ["runuser", "-u", "postgres", "--"]
    root = Path(tempfile.mkdtemp(prefix="orca-postgres-"))
    if owner is not None:
        os.chown(root, owner.pw_uid, owner.pw_gid)
    data, port = root / "data", _free_port()

    def pg(*command: str) -> None:
        done = subprocess.run([*as_user, *command], capture_output=True, text=True, check=False)
        assert done.returncode == 0, f"{command[0]}: {done.stdout}{done.stderr}"

    pg_ctl = [str(bin_dir / "pg_ctl"), "-D", str(data)]
    options = (
        f"-p {port} -k {root} -c listen_addresses=127.0.0.1 "
        "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    )
    try:
        pg(str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "-E", "UTF8",
           "--no-sync", "--auth-local=trust", "--auth-host=scram-sha-256")  # fmt: skip
        pg(*pg_ctl, "-l", str(root / "server.log"), "-w", "-t", "60", "-o", options, "start")
        server = Postgres(root, port)
        try:
            with closing(server.admin()) as admin, admin.cursor() as cursor:
                cursor.execute(f"CREATE ROLE {ROLE} LOGIN PASSWORD %s", (PASSWORD,))
                cursor.execute(f"CREATE DATABASE {DATABASE} OWNER {ROLE}")
                cursor.execute(f"CREATE ROLE {GUEST} LOGIN PASSWORD %s", (GUEST,))
                cursor.execute("CREATE DATABASE guarded")  # postgres's: guest may only log in
            yield server
        finally:
            pg(*pg_ctl, "-m", "immediate", "-w", "stop")
    finally:
        shutil.rmtree(root, ignore_errors=True)


# --- the setting itself: no server needed ------------------------------------------------


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://u:secret@db/orca", "the scheme is 'mysql', not 'postgresql'"),
        ("postgresql+asyncpg://u:secret@db/orca", "give it without a driver ('+asyncpg')"),
        ("postgresql://u:secret@db", "names no single DBNAME"),
        ("postgresql://u:secret@db/orca/x", "names no single DBNAME"),
        ("postgresql://db/orca", "no USER"),
        ("postgresql://u:secret@db:99999/orca", "not a URL (Port out of range"),
        ("postgresql://u:secret@db/orca?sslmode=require", "PGSSLMODE"),
    ],
)
def test_a_bad_database_url_is_named_with_its_password_masked(url, message, monkeypatch, capsys):
    with pytest.raises(TeamDatabaseError, match="expected postgresql://USER:PASSWORD@HOST") as e:
        TeamDatabase.parse(url)
    assert message in str(e.value) and "secret" not in str(e.value)
    assert str(e.value).startswith(f"{DATABASE_URL_ENV}=")
    monkeypatch.setenv(DATABASE_URL_ENV, url)
    assert main(["tasks"]) == 2  # before any work, naming the setting
    err = capsys.readouterr().err
    assert message in err and "secret" not in err


def test_one_url_points_prefect_and_mlflow_at_their_own_schemas(tmp_path, monkeypatch):
    url = _url(ROLE, PASSWORD, 6543)
    database = TeamDatabase.parse(url)
    assert (database.user, database.password, database.port) == (ROLE, PASSWORD, 6543)
    assert database.masked_url == f"postgresql://{ROLE}:***@127.0.0.1:6543/{DATABASE}"
    monkeypatch.setenv(DATABASE_URL_ENV, url)
    env = StateDir(tmp_path).environment()
    assert env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] == url.replace(
        "postgresql://", "postgresql+asyncpg://"
    )
    assert env["PREFECT_SERVER_DATABASE_SQLALCHEMY_CONNECT_ARGS_SEARCH_PATH"] == "prefect, public"
    assert env["MLFLOW_TRACKING_URI"] == (
        url.replace("postgresql://", "postgresql+psycopg2://") + "?options=-csearch_path%3Dmlflow"
    )
    assert StateDir(tmp_path).mlflow_uri == env["MLFLOW_TRACKING_URI"]
    monkeypatch.delenv(DATABASE_URL_ENV)
    assert StateDir(tmp_path).environment()["MLFLOW_TRACKING_URI"].startswith("sqlite:///")


def test_team_mode_without_its_driver_names_the_extra_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg2", None)  # as if not installed
    with pytest.raises(TeamDatabaseError, match=r"pip install 'orca-xmodal\[team\]'"):
        TeamDatabase.parse(_url(ROLE, PASSWORD, 6543)).connect()


# --- against the server --------------------------------------------------------------------


def test_an_unusable_database_fails_before_any_work(postgres, monkeypatch, capsys):
    closed = _free_port()
    cases = {
        _url(ROLE, PASSWORD, closed): f"{ROLE}:***@127.0.0.1:{closed}/{DATABASE}: cannot connect",
        postgres.url(password="wrong-one"): "password authentication failed",
        postgres.url(GUEST, GUEST, "guarded"): "CREATE SCHEMA prefect AUTHORIZATION",
    }
    for url, message in cases.items():
        monkeypatch.setenv(DATABASE_URL_ENV, url)
        assert main(["tasks"]) == 2, url
        err = capsys.readouterr().err
        assert message in err, err
        assert f"{DATABASE_URL_ENV}=postgresql://" in err
        assert all(secret not in err for secret in (PASSWORD, "wrong-one", f":{GUEST}@"))


def test_one_process_at_a_time_holds_the_first_use_lock(postgres):
    """Two machines starting on a new database: the second waits while the first migrates."""
    database = TeamDatabase.parse(postgres.url())
    entered = threading.Event()

    def second() -> None:
        with database.setup_lock():
            entered.set()

    with database.setup_lock():
        waiting = threading.Thread(target=second)
        waiting.start()
        assert not entered.wait(1.0)  # still held here
    assert entered.wait(30)
    waiting.join()


def test_a_two_worker_bench_keeps_its_runs_in_the_team_database(postgres, tiny_bert_dir, tmp_path):
    from mlflow import MlflowClient

    state, url = tmp_path / "state", postgres.url()
    env = state_env(state, ORCA_PREFECT_API="background", **{DATABASE_URL_ENV: url})
    command = [
        sys.executable, "-m", "cli.console", "--state-dir", str(state), "bench",
        "--tasks", "gunpoint", "--methods", "scratch", "linear", "--seeds", "1",
        "--workers", "2", "--backbone", str(tiny_bert_dir), *TINY, "--json",
    ]  # fmt: skip
    done = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    bench = json.loads(done.stdout)
    assert bench["runs"] == 2 and bench["failures"] == [], bench["failures"]

    # Prefect's flow runs: in the `prefect` schema, every one completed.
    with closing(postgres.admin(DATABASE)) as db, db.cursor() as cursor:
        cursor.execute(
            "SELECT f.name, r.state_type, r.id::text FROM prefect.flow_run r "
            "JOIN prefect.flow f ON f.id = r.flow_id"
        )
        flow_runs = cursor.fetchall()
        cursor.execute(
            "SELECT table_schema, count(*) FROM information_schema.tables WHERE table_schema IN "
            "('public', 'prefect', 'mlflow') AND table_name = 'alembic_version' GROUP BY 1"
        )
        migrated = dict(cursor.fetchall())
        cursor.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        )
        (in_public,) = cursor.fetchone()
    assert sorted((name, kind) for name, kind, _ in flow_runs) == [
        ("orca-pipeline", "COMPLETED"), ("orca-pipeline", "COMPLETED"), ("orca-sweep", "COMPLETED"),
    ]  # fmt: skip
    assert migrated == {"prefect": 1, "mlflow": 1} and in_public == 0

    # MLflow's runs: in the `mlflow` schema, each pipeline run naming its Prefect flow run.
    client = MlflowClient(TeamDatabase.parse(url).mlflow_uri)
    sweep_run = client.get_run(bench["sweep_run_id"])
    children = client.search_runs(
        [sweep_run.info.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{bench['sweep_run_id']}'",
    )
    assert sorted(run.data.tags["orca.method"] for run in children) == ["linear", "scratch"]
    pipeline_flow_runs = {run_id for name, _, run_id in flow_runs if name == "orca-pipeline"}
    assert {run.data.tags["prefect.flow_run_id"] for run in children} == pipeline_flow_runs
    experiment = client.get_experiment(sweep_run.info.experiment_id)
    assert experiment.artifact_location == (state / "mlartifacts").as_uri()  # artifacts stay

    # No SQLite database for either of them in the state directory.
    assert sorted(str(path.relative_to(state)) for path in state.rglob("*.db")) == []
    assert "Prefect API server started" in (state / "prefect" / "server.log").read_text()
