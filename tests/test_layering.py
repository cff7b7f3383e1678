"""The house rules, read from the source with ast:

- cli/ -> flows/ -> tasks/ -> orca/: no package imports one above it; runtime/ (Prefect and
  MLflow run locally and remotely) is used by cli/, flows/ and tasks/ only;
- orca/ is the framework-free library: no Prefect, no MLflow;
- every module in flows/ defines a flow;
- no import circles among orca's own modules, counting imports inside functions too.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("cli", "flows", "tasks", "runtime", "orca")
# package -> the first-party packages it may import (itself included)
MAY_IMPORT = {
    "cli": {"cli", "flows", "tasks", "runtime", "orca"},
    "flows": {"flows", "tasks", "runtime", "orca"},
    "tasks": {"tasks", "runtime", "orca"},
    "runtime": {"runtime", "orca"},
    "orca": {"orca"},
}
FRAMEWORKS = ("prefect", "mlflow", "prefect_dask", "distributed")


def _modules() -> dict[str, Path]:
    """Module name -> file, for every first-party module."""
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


MODULES = _modules()


def _imported(name: str, path: Path) -> Iterator[str]:
    """Every module name `name`'s source imports, at any depth (functions included)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:  # `from a import b`: the module a.b where b is one
                yield f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base


def _first_party(target: str) -> str | None:
    """The first-party module `target` names (itself, or the package it is in), or None."""
    while target and target not in MODULES:
        target = target.rpartition(".")[0]
    return target or None


def _graph() -> dict[str, set[str]]:
    return {
        name: {m for t in _imported(name, path) if (m := _first_party(t)) and m != name}
        for name, path in MODULES.items()
    }


def test_packages_import_only_downwards():
    offenders = []
    for name, imports in _graph().items():
        layer = name.split(".")[0]
        offenders += [f"{name} -> {m}" for m in imports if m.split(".")[0] not in MAY_IMPORT[layer]]
    assert offenders == []


def test_orca_imports_no_framework():
    offenders = [
        f"{name}: {target}"
        for name, path in MODULES.items()
        if name.split(".")[0] == "orca"
        for target in _imported(name, path)
        if target.split(".")[0] in FRAMEWORKS
    ]
    assert offenders == []


def _defines_a_flow(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for decorator in node.decorator_list:
                target = decorator.func if isinstance(decorator, ast.Call) else decorator
                if getattr(target, "id", getattr(target, "attr", None)) == "flow":
                    return True
    return False


def test_every_module_in_flows_defines_a_flow():
    modules = [p for n, p in MODULES.items() if n.startswith("flows.") and p.stem != "__init__"]
    assert modules, "no flow modules found"
    assert [p.name for p in modules if not _defines_a_flow(p)] == []


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph.get(node, ())):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_finds_a_circle_and_only_a_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_circles(package):
    graph = _graph()
    assert [c for c in _cycles(graph) if c[0].split(".")[0] == package] == []
