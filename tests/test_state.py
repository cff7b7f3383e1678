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
from huggingface_hub import constants
print(constants.HF_HOME)
print(get_current_settings().home)
"""
HF_PROBE = """
from runtime.state import activate
activate()
from huggingface_hub import constants
print(constants.HF_HOME, constants.HF_HUB_CACHE)
"""


def test_state_environment_points_everything_under_the_root(tmp_path):
    env = StateDir(tmp_path).environment()
    assert env["PREFECT_HOME"] == str(tmp_path / "prefect")
    assert env["MLFLOW_TRACKING_URI"] == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert env["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    assert env["MLFLOW_DISABLE_TELEMETRY"] == "true"
    assert env["HF_HOME"] == str(tmp_path / "huggingface")


def _probe(home, state, probe=PROBE, **extra):
    """Run `probe` with only `home`, `state` and `extra` as orca's environment; its lines."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PREFECT_", "MLFLOW_", "ORCA_", "AEON_", "HF_HOME"))
    }
    env.update(HOME=str(home), ORCA_HOME=str(state), **extra)
    done = subprocess.run(
        [sys.executable, "-c", probe],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()


def test_nothing_is_written_to_the_home_directory(tmp_path):
    home, state = tmp_path / "home", tmp_path / "state"
    home.mkdir()
    *_, hf_home, prefect_home = _probe(home, state)
    assert prefect_home == str(state / "prefect")
    assert hf_home == str(state / "huggingface")  # hub models and datasets: not ~/.cache
    assert list(home.iterdir()) == []
    assert (state / "downloads" / "aeon").is_dir()


def test_a_hugging_face_home_the_user_set_is_kept(tmp_path):
    home, state, mine = tmp_path / "home", tmp_path / "state", tmp_path / "my-hf"
    home.mkdir()
    (line,) = _probe(home, state, HF_PROBE, HF_HOME=str(mine))
    assert line == f"{mine} {mine / 'hub'}"
