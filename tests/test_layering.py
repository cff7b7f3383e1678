"""orca/ is the framework-free library: it never imports Prefect, MLflow, tasks or flows."""

import ast
from pathlib import Path

import orca

FORBIDDEN = ("prefect", "mlflow", "tasks", "flows")


def test_orca_imports_no_framework_or_outer_layer():
    offenders = []
    for path in Path(orca.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in FORBIDDEN]
    assert offenders == []
