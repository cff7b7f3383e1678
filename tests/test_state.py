"""All state stays under ORCA_HOME: nothing is written to the home directory."""

import os
import subprocess
import sys

from runtime.state import StateDir

PROBE = """
from runtime.state import activate
activate()
import mlflow, prefect
from prefect.settings import get_current_settings
from orca.data.ucr import load_ucr
load_ucr("GunPoint")
print(get_current_settings().home)
"""


def test_state_environment_points_everything_under_the_root(tmp_path):
    env = StateDir(tmp_path).environment()
    assert env["PREFECT_HOME"] == str(tmp_path / "prefect")
    assert env["MLFLOW_TRACKING_URI"] == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert env["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    assert env["MLFLOW_DISABLE_TELEMETRY"] == "true"


def test_nothing_is_written_to_the_home_directory(tmp_path):
    home, state = tmp_path / "home", tmp_path / "state"
    home.mkdir()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PREFECT_", "MLFLOW_", "ORCA_", "AEON_"))
    }
    env.update(HOME=str(home), ORCA_HOME=str(state))
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == str(state / "prefect")
    assert list(home.iterdir()) == []
    assert (state / "downloads" / "aeon").is_dir()
