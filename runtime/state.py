"""The one directory that holds all of orca's state, and the environment that points there.

Layout under the state root (default `./.orca`, overridable with ORCA_HOME):

    data/        ingested task splits (Arrow)
    artifacts/   stage outputs (features, checkpoints), content-addressed by stage key
    results/     Prefect's persisted task results (the cache records)
    prefect/     PREFECT_HOME: Prefect's own database and settings
    mlflow.db    MLflow tracking store (SQLite)
    mlartifacts/ MLflow artifact store
    downloads/   third-party data caches (e.g. aeon's), instead of the home directory
    huggingface/ HF_HOME: the Hugging Face cache (hub models, datasets), unless HF_HOME is set

With ORCA_DATABASE_URL set (team mode, runtime/team_db.py), Prefect's and MLflow's
databases are the two schemas of one PostgreSQL database instead, and prefect/prefect.db and
mlflow.db are not made; everything else stays here.

The cache records of the stage and pipeline-run tasks can live elsewhere: ORCA_RESULT_STORAGE
(or `orca --result-storage`) is a local directory or an fsspec URL (`file:///shared/results`,
`s3://bucket/prefix` with s3fs installed, `gcs://bucket/prefix` with gcsfs). Only those
records (small JSON references) move; stage artifacts stay under the state root, and
Prefect's other results stay in results/. tasks/storage.py applies it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from runtime import team_db

STATE_ENV_VAR = "ORCA_HOME"
RESULT_STORAGE_ENV = "ORCA_RESULT_STORAGE"


def is_url(location: str) -> bool:
    """True for an fsspec URL (`scheme://...`); False for a local path."""
    scheme, sep, _ = location.partition("://")
    return bool(sep) and len(scheme) > 1 and scheme.replace("+", "").isalnum()


def local_path(location: str) -> Path | None:
    """The absolute local path that `location` (a path or a `file://` URL) names; None for
    a URL of another filesystem."""
    if not is_url(location):
        return Path(location).expanduser().resolve()
    url = urlsplit(location)
    if url.scheme != "file":
        return None
    if url.netloc not in ("", "localhost"):
        raise ValueError(f"result storage {location!r}: a file:// URL names no host")
    return Path(url.path).resolve()


def check_result_storage(location: str) -> str:
    """Validate a result storage location: a local path or `file://` URL (returned as an
    absolute path), or a URL whose fsspec protocol is known and installed (returned as
    given). Raises ValueError naming the protocol and the package that provides it."""
    if not location:
        raise ValueError(f"{RESULT_STORAGE_ENV} is empty; expected a local path or a URL")
    path = local_path(location)
    if path is not None:
        return str(path)
    import fsspec

    protocol = location.partition("://")[0]
    try:
        fsspec.get_filesystem_class(protocol)
    except (ImportError, ValueError) as error:  # unknown, or its package is not installed
        raise ValueError(f"result storage {location!r}: {error}") from error
    if protocol == "memory":
        raise ValueError(
            f"result storage {location!r}: memory:// is private to one process, so worker "
            "processes and later commands would not see the records; use a path or a "
            "shared URL"
        )
    return location


@dataclass(frozen=True)
class StateDir:
    root: Path

    @classmethod
    def from_env(cls) -> StateDir:
        return cls(Path(os.environ.get(STATE_ENV_VAR, ".orca")).expanduser().resolve())

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def artifacts(self) -> Path:
        return self.root / "artifacts"

    @property
    def results(self) -> Path:
        return self.root / "results"

    @property
    def prefect_home(self) -> Path:
        return self.root / "prefect"

    @property
    def mlflow_uri(self) -> str:
        """MLflow's tracking store: the team database's (ORCA_DATABASE_URL), else the
        SQLite file mlflow.db."""
        database = team_db.configured()
        if database is not None:
            return database.mlflow_uri
        return f"sqlite:///{self.root / 'mlflow.db'}"

    @property
    def huggingface(self) -> Path:
        return self.root / "huggingface"

    @property
    def mlflow_artifacts(self) -> Path:
        return self.root / "mlartifacts"

    def create(self) -> StateDir:
        for path in (self.data, self.artifacts, self.results, self.prefect_home):
            path.mkdir(parents=True, exist_ok=True)
        self.mlflow_artifacts.mkdir(parents=True, exist_ok=True)
        return self

    def environment(self) -> dict[str, str]:
        """Environment variables for an isolated, offline, quiet run under this root.

        They must be in os.environ before Prefect or MLflow is imported. With
        ORCA_DATABASE_URL set, Prefect's server and MLflow use that PostgreSQL database.
        """
        environment = {
            STATE_ENV_VAR: str(self.root),
            "PREFECT_HOME": str(self.prefect_home),
            "PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(self.results),
            "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "true",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
            "PREFECT_LOGGING_LEVEL": os.environ.get("PREFECT_LOGGING_LEVEL", "INFO"),
            "MLFLOW_TRACKING_URI": self.mlflow_uri,
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "DO_NOT_TRACK": "true",
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "AEON_DATA": str(self.root / "downloads" / "aeon"),
            "HF_HOME": str(self.huggingface),
        }
        database = team_db.configured()
        if database is not None:
            environment.update(database.environment())
        return environment


def activate(
    root: str | os.PathLike[str] | None = None, result_storage: str | None = None
) -> StateDir:
    """Create the state directory and export its environment into this process.

    Values the user already set explicitly (e.g. PREFECT_API_URL, MLFLOW_TRACKING_URI,
    HF_HOME) win, so that a deployment can point at shared servers. `result_storage` (or an
    existing ORCA_RESULT_STORAGE) is checked and exported as ORCA_RESULT_STORAGE: where the
    cached tasks keep their records (tasks/storage.py); it must be set before they are
    imported. A team database (ORCA_DATABASE_URL) is checked first: it must answer, and its
    two schemas are made if missing (runtime/team_db.py). Each check raises ValueError
    before anything is changed.
    """
    database = team_db.configured()
    if database is not None:
        database.ensure_schemas()
    result_storage = result_storage or os.environ.get(RESULT_STORAGE_ENV)
    if result_storage is not None:
        result_storage = check_result_storage(result_storage)
    if root is not None:
        os.environ[STATE_ENV_VAR] = str(Path(root).expanduser().resolve())
    if result_storage is not None:
        os.environ[RESULT_STORAGE_ENV] = result_storage
    state = StateDir.from_env().create()
    for key, value in state.environment().items():
        if key == STATE_ENV_VAR:
            os.environ[key] = value
        else:
            os.environ.setdefault(key, value)
    return state


# Variables a worker process needs besides the state directory's own environment.
WORKER_VARIABLES = (
    RESULT_STORAGE_ENV,
    team_db.DATABASE_URL_ENV,
    "ORCA_DATA_DIR",
    "HF_HUB_OFFLINE",
    "PREFECT_API_URL",
    "ORCA_STOP_FILE",  # orca.stopping: a stop of the command reaches its workers
)


def worker_environment() -> dict[str, str]:
    """orca's environment as this process sees it, for a worker process to adopt."""
    from prefect.settings import PREFECT_API_URL

    names = (*StateDir.from_env().environment(), *WORKER_VARIABLES)
    environment = {name: os.environ[name] for name in names if name in os.environ}
    if PREFECT_API_URL.value():  # shared_prefect_api sets it as a setting, not a variable
        environment["PREFECT_API_URL"] = PREFECT_API_URL.value()
    return environment
