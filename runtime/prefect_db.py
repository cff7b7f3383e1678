"""A migrated, empty Prefect database to start new state directories from.

Prefect's server brings a new SQLite database to its schema by running its whole chain of
migrations (about 150), which took 15 s of CPU on a 2-core machine: more than the rest of
the server's start-up, and paid by every new state directory (every test, every fresh
benchmark). So the chain is run once per installed Prefect version, with Prefect's own
`prefect server database upgrade`, into a template database kept with the installation
(under sys.prefix, not the home directory); a new state directory starts from a copy of it.
The server still checks the schema on start, so a template that is somehow behind is
migrated the usual way.

`make bootstrap` makes the template (`python -m runtime.prefect_db`); if it is missing, the
first state directory to need it makes it.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

from orca.atomic import atomic_path

SQLITE_URL_PREFIX = "sqlite+aiosqlite:///"


def template_path() -> Path:
    from importlib.metadata import version

    return Path(sys.prefix) / "share" / "orca" / f"prefect-{version('prefect')}.db"


def state_database() -> Path | None:
    """The state's Prefect SQLite file, or None where Prefect is set to another database."""
    url = os.environ.get("PREFECT_API_DATABASE_CONNECTION_URL") or os.environ.get(
        "PREFECT_SERVER_DATABASE_CONNECTION_URL"
    )
    if url:
        is_sqlite = url.startswith(SQLITE_URL_PREFIX)
        return Path(url.removeprefix(SQLITE_URL_PREFIX)) if is_sqlite else None
    home = os.environ.get("PREFECT_HOME")
    return Path(home) / "prefect.db" if home else None


def make_template() -> Path:
    """Run Prefect's migrations into the template database (once per Prefect version)."""
    template = template_path()
    if template.is_file():
        return template
    with tempfile.TemporaryDirectory(prefix="orca-prefect-db-") as scratch:
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("PREFECT_API_DATABASE", "PREFECT_SERVER_DATABASE"))
        }
        env["PREFECT_HOME"] = scratch
        subprocess.run(
            [str(Path(sys.executable).parent / "prefect"), "server", "database", "upgrade", "-y"],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        migrated = Path(scratch) / "prefect.db"
        with sqlite3.connect(migrated) as db:  # one self-contained file, no write-ahead log
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            db.execute("PRAGMA journal_mode=DELETE")
        with atomic_path(template) as tmp:
            shutil.copyfile(migrated, tmp)
    return template


def seed_state_database() -> bool:
    """Start the state's Prefect database from the template if it does not exist yet;
    True if it was seeded. A failure leaves it to the server's own migrations."""
    database = state_database()
    if database is None or database.exists():
        return False
    try:
        template = make_template()
        with atomic_path(database) as tmp:
            shutil.copyfile(template, tmp)
    except (OSError, subprocess.CalledProcessError):
        return False
    return True


def use_immediate_transactions() -> None:
    """In a Prefect server process, before its app is made: on a SQLite database, every
    transaction Prefect begins takes the write lock at once (BEGIN IMMEDIATE).

    Prefect begins most of its transactions DEFERRED: they read, then write. In SQLite's
    write-ahead log, such a transaction cannot start writing once another connection has
    written since it read (the server's services record task runs and events from other
    connections all the time); it fails at once with "database is locked", whatever the
    busy timeout. The API answers 503, and Prefect's client tries again two seconds later:
    a nested flow run of a sweep met this about once every ten seconds. A transaction
    that begins IMMEDIATE waits for the lock instead (up to Prefect's busy timeout), which
    costs milliseconds on one user's server. Other databases, such as a team's PostgreSQL
    (runtime/team_db.py), which locks rows rather than the whole database, are left as
    they are.
    """
    from prefect.server.database.dependencies import set_database_config
    from prefect.settings import PREFECT_API_DATABASE_CONNECTION_URL

    url = PREFECT_API_DATABASE_CONNECTION_URL.value()
    if url.startswith(SQLITE_URL_PREFIX):
        set_database_config(immediate_sqlite_configuration(url))


def immediate_sqlite_configuration(url: str):
    """Prefect's SQLite database configuration for `url`, beginning every transaction
    IMMEDIATE (see use_immediate_transactions)."""
    from contextlib import asynccontextmanager

    from prefect.server.database.configurations import AioSqliteConfiguration

    class ImmediateSqliteConfiguration(AioSqliteConfiguration):
        @asynccontextmanager
        async def begin_transaction(self, session, with_for_update: bool = False):
            async with super().begin_transaction(session, with_for_update=True) as transaction:
                yield transaction

    return ImmediateSqliteConfiguration(connection_url=url)


if __name__ == "__main__":
    print(make_template())
