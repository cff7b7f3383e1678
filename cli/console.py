"""The `orca` console script: `cli.main.main` in a process of its own.

A command's process holds a large, long-lived heap: torch, Prefect (its pydantic models),
MLflow and SQLAlchemy, imported once and kept to the end. Python's cyclic garbage collector
walks all of it on every full collection, and again, several times, while the interpreter
shuts down: about 0.2 s a full collection and 2 s at exit on 2 cores, for objects that live
as long as the process does. So the command freezes its heap (`gc.freeze`, which moves
every object tracked so far out of the collector's reach):

- once its modules are imported, so that full collections during the run walk only what
  the run itself allocated;
- once it has finished, so that the interpreter's exit does not walk the heap again.

Objects frozen are still freed by reference counting; only reference cycles among them
are never collected, which costs nothing for objects that live until the process exits.
This is done only where the process is the command's own: `cli.main.main` called from
another program (the tests) leaves that program's collector alone. `python -m cli.console`
and `python -m cli.main` run it too.
"""

from __future__ import annotations

import gc
import sys

from cli.main import main


def console_main() -> int:
    """Run the command given on the command line; return its exit code."""
    code = main(after_load=gc.freeze)
    gc.freeze()  # after everything the command did: nothing left for the exit to walk
    return code


if __name__ == "__main__":
    sys.exit(console_main())
