"""The Prefect and MLflow versions orca's runtime is tested on, checked at start.

runtime/ uses APIs of Prefect and MLflow that are not public (listed in runtime/__init__.py),
which may change in any minor release. Importing runtime/ checks the installed versions'
major.minor against TESTED and stops with a message saying what is installed, what is
supported and how to install it, before anything relies on them. pyproject.toml pins the
same ranges.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib.metadata import PackageNotFoundError, version

# distribution -> the major.minor release tested, and the pip requirement that pins it.
TESTED: Mapping[str, tuple[str, str]] = {
    "prefect": ("3.9", "prefect>=3.9.1,<3.10"),
    "mlflow": ("3.17", "mlflow>=3.17,<3.18"),
}


class UnsupportedVersionError(RuntimeError):
    """An installed Prefect or MLflow is not the release orca's runtime was tested on."""


def _minor(text: str) -> str:
    return ".".join(text.split(".")[:2])


def check_supported(installed: Callable[[str], str] = version) -> None:
    """Raise UnsupportedVersionError naming every distribution whose installed major.minor
    (read by `installed`, importlib.metadata's `version` by default) is not TESTED's."""
    problems = []
    for name, (tested, requirement) in TESTED.items():
        try:
            found = installed(name)
        except PackageNotFoundError:
            found = "not installed"
        if _minor(found) != tested:
            problems.append(f"{name} {found} (supported: {tested}.x; pip install '{requirement}')")
    if problems:
        raise UnsupportedVersionError(
            "orca's runtime uses Prefect and MLflow APIs that are not public (listed in "
            "runtime/__init__.py) and is tested only on the releases pinned in pyproject.toml; "
            "found " + "; ".join(problems)
        )
