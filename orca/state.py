"""The one directory that holds all of orca's state, and the environment that points there.

Layout under the state root (default `./.orca`, overridable with ORCA_HOME):

    data/        ingested task splits (Arrow)
    artifacts/   stage outputs (features, checkpoints), content-addressed by stage key
    results/     Prefect's persisted task results (the cache records)
    prefect/     PREFECT_HOME: Prefect's own database and settings
    mlflow.db    MLflow tracking store (SQLite)
    mlartifacts/ MLflow artifact store
    downloads/   third-party data caches (e.g. aeon's), instead of the home directory
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

STATE_ENV_VAR = "ORCA_HOME"


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
        return f"sqlite:///{self.root / 'mlflow.db'}"

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

        They must be in os.environ before Prefect or MLflow is imported.
        """
        return {
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
        }


def activate(root: str | os.PathLike[str] | None = None) -> StateDir:
    """Create the state directory and export its environment into this process.

    Values the user already set explicitly (e.g. PREFECT_API_URL, MLFLOW_TRACKING_URI) win,
    so that a deployment can point at shared servers.
    """
    if root is not None:
        os.environ[STATE_ENV_VAR] = str(Path(root).expanduser().resolve())
    state = StateDir.from_env().create()
    for key, value in state.environment().items():
        if key == STATE_ENV_VAR:
            os.environ[key] = value
        else:
            os.environ.setdefault(key, value)
    return state
