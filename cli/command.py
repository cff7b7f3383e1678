"""What an `orca` command is, for cli/main.py to run it.

Each command module (cli/commands_*.py, cli/retry.py, cli/ui.py, cli/otdd.py) describes its
commands as `Command`s. Typer calls a command's `define` function with the parsed command
line; it only hands the arguments back, as a namespace with one attribute per parameter.
cli/main.py then runs the command in steps, so that every check comes before any work:

    args = define(...)                 # typer: a bad flag or value exits 2 here
    prepared = prepare(args)           # ValueError, UserError: exit 2, one line, no work done
    result = run(args, prepared)       # the work; CommandFailed: exit 1 (already reported)
    status(result)                     # the exit status
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from runtime.mlflow_db import SQL_STORE_MODULE

Args = SimpleNamespace  # a command's parsed arguments, by parameter name

# In a command's `preload`: imported while the Prefect API boots (runtime/mlflow_db.py).
TRACKING_PRELOAD = (SQL_STORE_MODULE,)


class CommandFailed(Exception):
    """The command's work failed, and it has said why on stderr: exit status 1."""


def _success(_result: Any) -> int:
    return 0


@dataclass(frozen=True)
class Command:
    """One `orca` command.

    - `define`: the typer function; its parameters are the command's arguments and flags,
      its docstring the command's help; it returns `Args(**locals())`.
    - `prepare(args)` checks everything and returns what `run` needs; `run(args, prepared)`
      does the work; `status(result)` is the exit status from run's result.
    - `uses_prefect`: the command runs flows on the shared Prefect API (runtime/prefect_api.py),
      which starts booting before `prepare`; the modules in `preload` are imported in the
      meantime, before the command waits for the API.
    - `needs_state`: the command uses the state directory, and a stop (SIGTERM, SIGINT) is a
      request honoured at the next safe point (orca/stopping.py). Without it (orca otdd) no
      state directory is set up and Ctrl-C interrupts at once.
    - `error_prefix`: how the command's one-line errors begin.
    """

    define: Callable[..., Args]
    prepare: Callable[[Args], Any]
    run: Callable[[Args, Any], Any]
    uses_prefect: bool = False
    preload: tuple[str, ...] = ()
    status: Callable[[Any], int] = _success
    needs_state: bool = True
    error_prefix: str = "orca"
