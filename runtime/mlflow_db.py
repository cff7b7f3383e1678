"""A migrated, empty MLflow tracking database to start new state directories from.

MLflow creates a new SQLite store by running its migrations, about 1.3 s of CPU on a
2-core machine, while the command it is for is still importing and Prefect's server is
starting. As with Prefect's database (runtime/prefect_db.py), that is done once per installed
MLflow version, into a template kept with the installation, and a new state directory
starts from a copy of it. The copy's Default experiment keeps its artifacts in the state
directory (mlartifacts/0), where MLflow would otherwise have put them under the working
directory of whichever process created the store.

`make bootstrap` makes the template (`python -m runtime.mlflow_db`); if it is missing, the
first state directory to need it makes it. A team database (ORCA_DATABASE_URL,
runtime/team_db.py) has no template: `prepare_store` has MLflow migrate it, once, with the
Default experiment's artifacts in the state directory too. Other tracking URIs (a tracking
server, another database) are left to MLflow.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from contextlib import closing
from pathlib import Path

from orca.atomic import atomic_path
from runtime import team_db
from runtime.state import StateDir

# MLflow's SQL store module (not public): about 0.5 s to import, so a command that will
# track imports it while the Prefect API boots (cli/command.py), not on the way to its
# first MLflow run.
SQL_STORE_MODULE = "mlflow.store.tracking.sqlalchemy_store"

SQLITE_URI_PREFIX = "sqlite:///"
# MLflow's SQL store makes its tables (every migration) and the Default experiment.
MAKE_STORE = (
    "import sys\n"
    "from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore\n"
    "SqlAlchemyStore(sys.argv[1], sys.argv[2])\n"
)


def template_path() -> Path:
    from importlib.metadata import version

    return Path(sys.prefix) / "share" / "orca" / f"mlflow-{version('mlflow')}.db"


def state_database() -> Path | None:
    """The tracking store's SQLite file, or None where MLFLOW_TRACKING_URI is another kind."""
    uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    return Path(uri.removeprefix(SQLITE_URI_PREFIX)) if uri.startswith(SQLITE_URI_PREFIX) else None


def make_template() -> Path:
    """Create the template store with MLflow's own code (once per MLflow version)."""
    template = template_path()
    if template.is_file():
        return template
    with tempfile.TemporaryDirectory(prefix="orca-mlflow-db-") as scratch:
        store = Path(scratch) / "mlflow.db"
        subprocess.run(
            [sys.executable, "-c", MAKE_STORE, f"{SQLITE_URI_PREFIX}{store}", scratch],
            env={key: value for key, value in os.environ.items() if key != "MLFLOW_TRACKING_URI"},
            check=True,
            capture_output=True,
            text=True,
        )
        with closing(sqlite3.connect(store)) as db:  # one self-contained file
            db.execute("PRAGMA journal_mode=DELETE")
        with atomic_path(template) as tmp:
            shutil.copyfile(store, tmp)
    return template


def seed_state_database() -> bool:
    """Start the state's tracking store from the template if it does not exist yet; True
    if it was seeded. A failure leaves it to MLflow, which creates the store itself."""
    database = state_database()
    if database is None or database.exists():
        return False
    default_artifacts = (StateDir.from_env().mlflow_artifacts / "0").as_uri()
    copy = database.with_name(f".{database.name}.seed-{os.getpid()}")
    try:
        template = make_template()
        shutil.copyfile(template, copy)
        with closing(sqlite3.connect(copy)) as db, db:
            db.execute(
                "UPDATE experiments SET artifact_location = ? WHERE experiment_id = 0",
                (default_artifacts,),
            )
        os.link(copy, database)  # atomic, and never over a store made meanwhile
    except (OSError, sqlite3.Error, subprocess.CalledProcessError):
        return False
    finally:
        copy.unlink(missing_ok=True)
    return True


def prepare_store() -> None:
    """Have the tracking store made and migrated before the first run is logged (in the
    state server's helper, while Prefect's server starts). A team database is opened with
    MLflow's SQL store, which migrates it if needed and makes the Default experiment with
    its artifacts in the state directory; the caller holds the team database's first-use
    lock (team_db.setup_lock). Any other store not seeded is made by MLflow's client."""
    if is_ready():
        return
    database = team_db.configured()
    if database is not None and os.environ.get("MLFLOW_TRACKING_URI") == database.mlflow_uri:
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

        # The root: MLflow keeps the Default experiment's artifacts in its subfolder 0.
        SqlAlchemyStore(database.mlflow_uri, StateDir.from_env().mlflow_artifacts.as_uri())
        return
    from mlflow import MlflowClient

    MlflowClient().search_experiments(max_results=1)


def is_ready() -> bool:
    """Whether the store is a local SQLite file that exists (seeded, or made earlier): then
    nothing needs creating or migrating before the first run is logged."""
    database = state_database()
    return database is not None and database.is_file()


if __name__ == "__main__":
    print(make_template())
