"""Arguments and flags that several `orca` commands share, and how their values are read.

Each is a typing.Annotated type for a typer function's parameter; the default goes in the
function's signature. `--set SECTION.FIELD=VALUE` values become nested override dicts with
`parse_overrides`, and --runner, --workers, --threads and --dask-address RunnerOptions with
`runner_options`. `--tasks` and `--methods` take several values after one flag (`--methods
orca scratch`), which typer's options do not: `spread_variadic` rewrites them as one flag per
value before parsing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Annotated, Any

import typer

from orca.devices import DEVICES
from orca.presets import PRESETS
from runtime.runners import TASK_RUNNERS, RunnerOptions

Json = Annotated[
    bool,
    typer.Option(
        "--json",
        help="print the result as one JSON object on stdout, and nothing else there "
        "(no progress bars)",
    ),
]
Overrides = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        metavar="SECTION.FIELD=VALUE",
        help="override a hyperparameter, e.g. refine.lr=1e-4 (repeatable)",
        show_default=False,
    ),
]
Task = Annotated[
    str | None,
    typer.Argument(metavar="TASK", help="a registered task (see `orca tasks`)", show_default=False),
]
TaskFile = Annotated[
    str | None,
    typer.Option("--task-file", help="a YAML task file (your own data; see README)"),
]
AllowOutside = Annotated[
    bool,
    typer.Option("--allow-outside", help="let the task file's split files lie outside its folder"),
]
DataDir = Annotated[
    str | None,
    typer.Option("--data-dir", help="where published benchmark files live (sets $ORCA_DATA_DIR)"),
]
Seeds = Annotated[int, typer.Option("--seeds", help="seeds per task and method")]
Preset = Annotated[
    str | None,
    typer.Option(
        "--preset",
        help=f"settings applied over each task's defaults, under --set: "
        f"{', '.join(PRESETS.names())} (paper: the authors' configs; default orca)",
        show_default=False,
    ),
]
Device = Annotated[
    str,
    typer.Option(
        "--device",
        help=f"where proxy, align, refine and evaluate run: {', '.join(DEVICES.names())} "
        "(auto: CUDA when torch sees a GPU, else the CPU)",
    ),
]
# Where the runs of `orca bench` and `orca demo` go (runtime/runners.py): `runner_options`.
DASK_ADDRESS_ENV = "ORCA_DASK_ADDRESS"
Workers = Annotated[int, typer.Option("--workers", help="pipeline runs at once")]
Threads = Annotated[
    int | None,
    typer.Option("--threads", help="torch threads per run (default: CPU cores / workers, >= 1)"),
]
Runner = Annotated[
    str,
    typer.Option("--runner", help=f"where the runs go: {', '.join(TASK_RUNNERS.names())}"),
]
DaskAddress = Annotated[
    str | None,
    typer.Option(
        "--dask-address",
        envvar=DASK_ADDRESS_ENV,
        help="an existing Dask scheduler for --runner dask (unset: a local cluster of "
        "--workers processes)",
    ),
]
ReportsDir = Annotated[
    str, typer.Option("--reports-dir", help="where the report files are written")
]

# Options that take one or more values after a single flag (argparse's nargs="+"), by the
# commands that have them.
VARIADIC_OPTIONS: dict[str, tuple[str, ...]] = {
    "bench": ("--tasks", "--methods"),
    "demo": ("--methods",),
    "recommend": ("--bodies", "--proxies", "--signals"),
}
# Options before the command (`orca --state-dir D run ...`) that take a value.
GLOBAL_VALUE_OPTIONS = ("--state-dir", "--result-storage")


class OverrideError(ValueError):
    """A --set value is not SECTION.FIELD=VALUE."""


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_overrides(items: Sequence[str] | None) -> dict[str, dict[str, Any]]:
    """Turn ["refine.lr=1e-4", "align.epochs=5"] into {"refine": {"lr": 1e-4}, ...}; each
    value is read as JSON where it is JSON (numbers, null, lists), else kept as text."""
    overrides: dict[str, dict[str, Any]] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        section, dot, field = key.partition(".")
        if not sep or not dot or not field:
            raise OverrideError(
                f"--set {item!r}: expected SECTION.FIELD=VALUE, e.g. refine.lr=1e-4"
            )
        overrides.setdefault(section, {})[field] = _parse_value(value)
    return overrides


def runner_options(args: Any) -> RunnerOptions:
    """The validated RunnerOptions of --runner, --workers, --threads (default: the CPU
    cores shared out among the workers) and --dask-address; ValueError names a bad one."""
    for name in ("workers", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ValueError(f"--{name} must be an integer >= 1, got {value}")
    return RunnerOptions(
        runner=args.runner,
        workers=args.workers,
        threads=args.threads or max(1, (os.cpu_count() or 1) // args.workers),
        dask_address=args.dask_address if args.runner == "dask" else None,
    )


def _command_index(argv: Sequence[str]) -> int | None:
    """Where the command's name is in `argv`: after the global options and their values."""
    index = 0
    while index < len(argv):
        token = argv[index]
        if token in GLOBAL_VALUE_OPTIONS:
            index += 2
        elif token.startswith("-"):
            index += 1
        else:
            return index
    return None


def spread_variadic(argv: Sequence[str]) -> list[str]:
    """`argv` with `--methods a b` written as `--methods a --methods b`, for the options in
    VARIADIC_OPTIONS of the command given. As with argparse, the values run up to the next
    token that starts with "-"; a flag with no value is left for the parser to reject."""
    argv = list(argv)
    start = _command_index(argv)
    if start is None or argv[start] not in VARIADIC_OPTIONS:
        return argv
    variadic = VARIADIC_OPTIONS[argv[start]]
    out, index = argv[: start + 1], start + 1
    while index < len(argv):
        token = argv[index]
        index += 1
        if token == "--":  # everything after it is positional: left as it is
            out += argv[index - 1 :]
            break
        if token not in variadic:
            out.append(token)
            continue
        values = []
        while index < len(argv) and not argv[index].startswith("-"):
            values.append(argv[index])
            index += 1
        out += [part for value in values for part in (token, value)] if values else [token]
    return out
