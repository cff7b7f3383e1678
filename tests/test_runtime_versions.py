"""runtime/ uses Prefect and MLflow APIs that are not public: an untested release of either
stops orca at start, saying what is installed and what to install."""

import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version

import pytest

from runtime.versions import TESTED, UnsupportedVersionError, check_supported


def test_the_installed_releases_are_the_tested_ones():
    check_supported()  # what this environment runs on passes
    for name, (tested, _) in TESTED.items():
        assert version(name).startswith(tested + ".")


def test_an_untested_prefect_is_refused_with_what_to_install():
    def installed(name):
        return "3.10.2" if name == "prefect" else version(name)

    with pytest.raises(UnsupportedVersionError, match=r"prefect 3\.10\.2 \(supported: 3\.9\.x"):
        check_supported(installed)


def test_a_missing_mlflow_is_named():
    def installed(name):
        if name == "mlflow":
            raise PackageNotFoundError(name)
        return version(name)

    with pytest.raises(UnsupportedVersionError, match=r"mlflow not installed .*mlflow>=3\.17"):
        check_supported(installed)


def test_importing_the_runtime_fails_at_start_under_another_prefect():
    code = (
        "import importlib.metadata as m\n"
        "real = m.version\n"
        "m.version = lambda n: '3.8.0' if n == 'prefect' else real(n)\n"
        "import runtime.state\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 1
    assert "UnsupportedVersionError" in done.stderr and "prefect 3.8.0" in done.stderr
