"""`orca`: the command line, on typer.

    orca [--state-dir D] [--result-storage S] [--version] COMMAND [ARGS]...

    run, ingest, tasks    a task through the pipeline, its splits, the tasks  commands_run.py
    bench, demo           sweeps of tasks x methods x seeds                   commands_sweep.py
    predict               a registered model's predictions (and metric)       commands_predict.py
    compare, ablations    the commands that write a report                    commands_report.py
    retry                 a failed flow run again                             retry.py
    ui                    the Prefect and MLflow UIs                          ui.py
    otdd                  the OTDD between two .npz files                     otdd.py
    recommend             rank (body, proxy) candidates before fine-tuning    commands_recommend.py

The right-hand column names each command's module in cli/; progress bars are in
cli/progress.py, tables in cli/tables.py, the console script in cli/console.py.

`main(argv)` parses with typer (a bad flag, value or missing argument: exit status 2 and a
line naming it), then runs the command in steps (cli/command.py): every check before any
work (a bad name fails at once with the valid choices: exit 2), then the work. Exit status:
0 done; 1 the work failed (a failed flow run, a sweep with failed runs); 2 a bad argument or
a request that cannot be met (orca.errors.UserError: one line, even when found after work
started); 128 + N when stopped by signal N, at a safe point. With --json every command
prints one JSON object on stdout and nothing else there. State goes under $ORCA_HOME
(default ./.orca) or --state-dir. Heavy modules (torch, Prefect, the flows) are imported by
the commands that use them, so that `orca --help` stays fast.
"""

from __future__ import annotations

import importlib
import signal
import sys
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from typing import Annotated, Any

import typer

from cli import (
    commands_predict,
    commands_recommend,
    commands_report,
    commands_run,
    commands_sweep,
    otdd,
    retry,
    ui,
)
from cli.command import Args, Command, CommandFailed
from cli.options import spread_variadic
from orca import stopping
from orca.errors import UserError

PACKAGE = "orca-xmodal"
COMMANDS: dict[str, Command] = {
    **commands_run.COMMANDS,
    **commands_sweep.COMMANDS,
    **commands_report.COMMANDS,
    **retry.COMMANDS,
    **ui.COMMANDS,
    **otdd.COMMANDS,
    **commands_predict.COMMANDS,
    **commands_recommend.COMMANDS,
}
# The order `orca --help` lists them in.
ORDER = (
    "run",
    "ingest",
    "tasks",
    "bench",
    "compare",
    "ablations",
    "demo",
    "predict",
    "recommend",
    "retry",
    "ui",
    "otdd",
)

app = typer.Typer(
    name="orca",
    help="ORCA cross-modal fine-tuning (align then refine) as a Prefect + MLflow pipeline.",
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode="markdown",
    context_settings={"help_option_names": ["-h", "--help"]},
)
for _name in ORDER:
    app.command(_name)(COMMANDS[_name].define)


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(PACKAGE)
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def _print_version(value: bool) -> None:
    if value:
        print(f"orca ({PACKAGE}) {package_version()}")
        raise typer.Exit(0)


@app.callback()
def global_options(
    ctx: typer.Context,
    state_dir: Annotated[
        str | None, typer.Option(help="state directory (default: $ORCA_HOME or ./.orca)")
    ] = None,
    result_storage: Annotated[
        str | None,
        typer.Option(
            help="where cache records go: a path or an fsspec URL such as s3://bucket/prefix "
            "(default: $ORCA_RESULT_STORAGE, else the state directory's results/)"
        ),
    ] = None,
    show_version: Annotated[
        bool,
        typer.Option("--version", is_eager=True, callback=_print_version, help="print the version"),
    ] = False,
) -> None:
    """Options for every command; they go before the command's name."""
    ctx.obj.update(
        command=ctx.invoked_subcommand, state_dir=state_dir, result_storage=result_storage
    )


def parse(argv: Sequence[str]) -> tuple[str, Args, dict[str, Any]] | int:
    """(command name, its arguments, the global options), or the exit status when parsing
    ends it: 0 after --help or --version, 2 for a bad command line (said on stderr)."""
    settings: dict[str, Any] = {}
    try:
        parsed = typer.main.get_command(app).main(
            args=spread_variadic(argv), prog_name="orca", standalone_mode=False, obj=settings
        )
    except typer.TyperException as error:  # click's UsageError and friends, from typer
        _usage_error(error)
        return getattr(error, "exit_code", 2)
    if isinstance(parsed, int):  # --help, --version
        return parsed
    return settings["command"], parsed, settings


def _usage_error(error: typer.TyperException) -> None:
    """`orca CMD: error: MESSAGE` and where to find help, on stderr (nothing more when the
    message is empty: `orca` alone has just printed its help)."""
    message = error.format_message().strip().replace("Value error, ", "")
    if not message:
        return
    ctx = getattr(error, "ctx", None)
    where = ctx.command_path if ctx is not None else "orca"
    print(f"{where}: error: {message}\nSee '{where} --help'.", file=sys.stderr)


def main(argv: list[str] | None = None, after_load: Callable[[], None] | None = None) -> int:
    """Parse, check and run one command; return its exit status. `after_load` is called
    once the command's modules are imported, before it waits for the Prefect API
    (cli/console.py)."""
    parsed = parse(sys.argv[1:] if argv is None else argv)
    if isinstance(parsed, int):
        return parsed
    name, args, settings = parsed
    command = COMMANDS[name]
    try:
        prepared = _prepare(command, args, settings)
        if after_load is not None:
            after_load()
    except (ValueError, FileNotFoundError, UserError) as error:
        print(f"{command.error_prefix}: error: {error}", file=sys.stderr)
        return 2
    if not command.needs_state:
        return _run(command, args, prepared)
    try:
        with stopping.handle_stop_signals():  # SIGTERM, SIGINT: stop at a safe point
            status = _run(command, args, prepared)
    except BaseException as error:
        if not stopping.is_stop(error):
            raise
        return _stopped(error)
    if stopping.stop_requested():  # runs in worker threads stopped; this one carried on
        return _stopped(None)
    return status


def _prepare(command: Command, args: Args, settings: dict[str, Any]) -> Any:
    """The state directory, the Prefect API booting (if used), the command's own checks,
    and its modules imported meanwhile."""
    if command.needs_state:
        from runtime.state import activate

        activate(settings["state_dir"], settings["result_storage"])
    if command.uses_prefect:
        from runtime import prefect_api

        prefect_api.boot()  # the server starts while this process loads the command
    prepared = command.prepare(args)
    for module in command.preload:
        importlib.import_module(module)
    return prepared


def _run(command: Command, args: Args, prepared: Any) -> int:
    """The command's work; its exit status."""
    api: Any = nullcontext()
    if command.uses_prefect:
        from runtime import prefect_api

        api = prefect_api.shared_prefect_api()
    try:
        with api:
            result = command.run(args, prepared)
    except UserError as error:  # found after work started: still one line, no traceback
        print(f"{command.error_prefix}: error: {error}", file=sys.stderr)
        return 2
    except CommandFailed:  # it has said why
        return 1
    return command.status(result)


def _stopped(error: BaseException | None) -> int:
    """One line on how the command stopped and how to resume; the exit status 128 + signal."""
    signum = getattr(error, "signum", None) or stopping.requesting_signal()
    if signum is None:
        signum = signal.SIGINT if isinstance(error, KeyboardInterrupt) else signal.SIGTERM
    detail = f"stopped by {stopping.signal_name(signum)}"
    if isinstance(error, stopping.StopRequested):
        detail = str(error)
    print(
        f"orca: {detail}. Finished stages are cached and "
        "training keeps its checkpoints: run the same command again to resume.",
        file=sys.stderr,
    )
    return 128 + signum


if __name__ == "__main__":  # python -m cli.main: the console script (cli/console.py)
    import runpy

    runpy.run_module("cli.console", run_name="__main__")
