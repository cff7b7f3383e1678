"""Trained models packaged for serving, loadable without orca installed.

orca.serving.package writes and reads a model package (the weights, the body's
architecture, the task's shapes); orca.serving.pyfunc is the loader module that MLflow's
python_function flavour imports from the model's own copy of this package; bodies.py says
how each kind of body is packaged and which distributions its loader needs. Framework-free:
tasks/model_registry.py logs the package to MLflow.
"""

from orca.serving.bodies import required_packages
from orca.serving.package import (
    PackageError,
    PackageManifest,
    ServedTask,
    load_package,
    read_manifest,
    write_package,
)

LOADER_MODULE = "orca.serving.pyfunc"

__all__ = [
    "LOADER_MODULE",
    "PackageError",
    "PackageManifest",
    "ServedTask",
    "load_package",
    "read_manifest",
    "required_packages",
    "write_package",
]
