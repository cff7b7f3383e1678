"""Team mode: Prefect's and MLflow's databases on one PostgreSQL server.

    ORCA_DATABASE_URL=postgresql://USER:PASSWORD@HOST:PORT/DBNAME

Unset, each state directory keeps its own SQLite files (prefect/prefect.db, mlflow.db). Set,
both go to the PostgreSQL database DBNAME, each in a schema of its own, since both keep their
migration state in a table named `alembic_version`:

    prefect   Prefect's server database: flow runs, task runs, events, blocks
    mlflow    MLflow's tracking and model-registry store: experiments, runs, models

Each library selects its schema on every connection it opens: Prefect through its
`search_path` connect argument (PREFECT_SERVER_DATABASE_SQLALCHEMY_CONNECT_ARGS_SEARCH_PATH,
"prefect, public": its migrations install pg_trgm, which a server's admin may have put in
public), MLflow through libpq's `options` in its store URI
(`postgresql+psycopg2://...?options=-csearch_path%3Dmlflow`). Prefect talks to PostgreSQL
with asyncpg (installed with Prefect), MLflow with psycopg2 (the `team` extra).

`ensure_schemas()` runs before any work (runtime/state.py `activate`): it connects, which
fails early on a bad password or an unreachable server, and creates the two schemas if they
are missing, which the database's owner may do. The tables come from each library's own
migrations: Prefect's server runs them when it starts, MLflow when its store is first opened
(runtime/mlflow_db.py `prepare_store`). The first command on a new database runs both while
it holds `setup_lock()`, a PostgreSQL advisory lock, so that two machines starting together
do not both migrate.

Other connection settings go in libpq's environment variables, which both drivers read:
PGSSLMODE (TLS), PGPASSWORD or PGPASSFILE (a password kept out of the URL), PGSSLROOTCERT.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlsplit

DATABASE_URL_ENV = "ORCA_DATABASE_URL"
EXPECTED_FORM = "postgresql://USER:PASSWORD@HOST:PORT/DBNAME"
SCHEMES = ("postgresql", "postgres")
DEFAULT_PORT = 5432
PREFECT_SCHEMA = "prefect"
MLFLOW_SCHEMA = "mlflow"
SCHEMAS = (PREFECT_SCHEMA, MLFLOW_SCHEMA)
CONNECT_TIMEOUT_S = 10
# pg_advisory_lock's key for the first use of a database (the bytes of "orca-db!").
SETUP_LOCK_KEY = int.from_bytes(b"orca-db!", "big") - 2**63
PREFECT_URL_ENV = "PREFECT_SERVER_DATABASE_CONNECTION_URL"
PREFECT_SEARCH_PATH_ENV = "PREFECT_SERVER_DATABASE_SQLALCHEMY_CONNECT_ARGS_SEARCH_PATH"


class TeamDatabaseError(ValueError):
    """ORCA_DATABASE_URL is malformed, or its server cannot be used (a user error)."""


def _fail(shown_url: str, problem: str) -> TeamDatabaseError:
    return TeamDatabaseError(f"{DATABASE_URL_ENV}={shown_url}: {problem}")


def _malformed(shown_url: str, problem: str) -> TeamDatabaseError:
    return _fail(
        shown_url,
        f"{problem}; expected {EXPECTED_FORM} (unset {DATABASE_URL_ENV} to keep the SQLite "
        "files in the state directory)",
    )


def _masked(url: str) -> str:
    """`url` with the password between ':' and '@' replaced by ***."""
    scheme, sep, rest = url.partition("://")
    credentials, at, location = rest.rpartition("@")
    if not sep or not at or ":" not in credentials:
        return url
    return f"{scheme}://{credentials.split(':', 1)[0]}:***@{location}"


@dataclass(frozen=True)
class TeamDatabase:
    """The PostgreSQL database that ORCA_DATABASE_URL names (user and password decoded)."""

    user: str
    password: str | None
    host: str
    port: int
    dbname: str

    @classmethod
    def parse(cls, url: str) -> TeamDatabase:
        """Check `url` and split it; TeamDatabaseError names what is wrong (password masked)."""
        shown = _masked(url)
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as error:
            raise _malformed(shown, f"not a URL ({error})") from None
        if parts.scheme not in SCHEMES:
            driver = parts.scheme.partition("+")[2]
            problem = (
                f"give it without a driver ('+{driver}'): orca adds asyncpg for Prefect "
                "and psycopg2 for MLflow"
                if parts.scheme.partition("+")[0] in SCHEMES
                else f"the scheme is {parts.scheme or 'missing'!r}, not 'postgresql'"
            )
            raise _malformed(shown, problem)
        if not parts.hostname:
            raise _malformed(shown, "no HOST")
        if not parts.username:
            raise _malformed(shown, "no USER")
        dbname = parts.path.removeprefix("/")
        if not dbname or "/" in dbname:
            raise _malformed(shown, f"the path {parts.path!r} names no single DBNAME")
        if parts.query or parts.fragment:
            raise _malformed(
                shown,
                "no query parameters are read: set TLS and other connection options in "
                "libpq's variables (PGSSLMODE, PGSSLROOTCERT, PGPASSFILE), which both drivers "
                "read",
            )
        password = None if parts.password is None else unquote(parts.password)
        return cls(unquote(parts.username), password, parts.hostname, port or DEFAULT_PORT,
                   unquote(dbname))  # fmt: skip

    def _url(self, scheme: str, query: str = "") -> str:
        credentials = quote(self.user, safe="")
        if self.password is not None:
            credentials += ":" + quote(self.password, safe="")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{credentials}@{host}:{self.port}/{quote(self.dbname, safe='')}{query}"

    @property
    def masked_url(self) -> str:
        """The URL as orca shows it: the password as ***."""
        return _masked(self._url("postgresql"))

    @property
    def prefect_url(self) -> str:
        """Prefect's server database (asyncpg); its schema is set by PREFECT_SEARCH_PATH_ENV."""
        return self._url("postgresql+asyncpg")

    @property
    def mlflow_uri(self) -> str:
        """MLflow's tracking and registry store (psycopg2), in the `mlflow` schema."""
        return self._url("postgresql+psycopg2", f"?options=-csearch_path%3D{MLFLOW_SCHEMA}")

    def environment(self) -> dict[str, str]:
        """The settings that point Prefect's server and MLflow at this database."""
        return {
            PREFECT_URL_ENV: self.prefect_url,
            PREFECT_SEARCH_PATH_ENV: f"{PREFECT_SCHEMA}, public",
            "MLFLOW_TRACKING_URI": self.mlflow_uri,
        }

    def connect(self) -> Any:
        """A psycopg2 connection to the database; TeamDatabaseError if the server refuses."""
        try:
            import psycopg2
        except ImportError:
            raise _fail(
                self.masked_url,
                "team mode needs psycopg2, MLflow's PostgreSQL driver; install it with: "
                "pip install 'orca-xmodal[team]'",
            ) from None
        try:
            connection = psycopg2.connect(
                host=self.host, port=self.port, user=self.user, password=self.password,
                dbname=self.dbname, connect_timeout=CONNECT_TIMEOUT_S,
                application_name="orca",
            )  # fmt: skip
        except psycopg2.OperationalError as error:
            reason = " ".join(str(error).split())  # libpq's lines; it never shows the password
            raise _fail(
                self.masked_url,
                f"cannot connect ({reason}); expected a PostgreSQL server that answers "
                f"there, and a database {self.dbname!r} that {self.user!r} may log in to",
            ) from None
        return connection

    def ensure_schemas(self) -> None:
        """Connect, and create the `prefect` and `mlflow` schemas where missing; raise
        TeamDatabaseError, with the statements its owner can run, if this role may not."""
        connection = self.connect()
        try:
            with connection, connection.cursor() as cursor:  # one transaction
                # Two commands creating a schema at once would both try; one would fail.
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", (SETUP_LOCK_KEY + 1,))
                cursor.execute(
                    "SELECT nspname FROM pg_namespace WHERE nspname = ANY(%s)", (list(SCHEMAS),)
                )
                present = {row[0] for row in cursor.fetchall()}
                for schema in SCHEMAS:
                    if schema not in present:
                        self._create_schema(cursor, schema)
                    cursor.execute("SELECT has_schema_privilege(%s, 'USAGE, CREATE')", (schema,))
                    if not cursor.fetchone()[0]:
                        raise self._privilege_error(
                            f"may not create tables in the schema {schema!r}",
                            f"GRANT USAGE, CREATE ON SCHEMA {schema} TO",
                        )
        finally:
            connection.close()

    def _create_schema(self, cursor: Any, schema: str) -> None:
        import psycopg2.errors

        try:
            cursor.execute(f"CREATE SCHEMA {schema}")
        except psycopg2.errors.InsufficientPrivilege:
            raise self._privilege_error(
                f"may not create the schema {schema!r}", f"CREATE SCHEMA {schema} AUTHORIZATION"
            ) from None

    def _privilege_error(self, problem: str, statement: str) -> TeamDatabaseError:
        return _fail(
            self.masked_url,
            f"the role {self.user!r} {problem} in the database {self.dbname!r} (orca keeps "
            f"Prefect's tables in the schema {PREFECT_SCHEMA!r} and MLflow's in "
            f"{MLFLOW_SCHEMA!r}); the database's owner can run: {statement} "
            f'"{self.user}"',
        )

    @contextmanager
    def setup_lock(self) -> Iterator[None]:
        """Hold the database's first-use lock: one process at a time migrates it (an
        advisory lock, released by the server when the connection ends, even if this
        process dies)."""
        connection = self.connect()
        connection.autocommit = True  # the lock is the session's, not a transaction's
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_lock(%s)", (SETUP_LOCK_KEY,))
            yield
        finally:
            connection.close()


def configured() -> TeamDatabase | None:
    """The team database ORCA_DATABASE_URL names; None when it is unset or empty."""
    url = os.environ.get(DATABASE_URL_ENV, "").strip()
    return TeamDatabase.parse(url) if url else None


def setup_lock() -> AbstractContextManager[None]:
    """The team database's first-use lock (TeamDatabase.setup_lock); nothing for SQLite."""
    database = configured()
    return nullcontext() if database is None else database.setup_lock()
