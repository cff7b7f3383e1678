"""Errors in what the user asked for, as opposed to faults in orca or its environment.

Commands print a UserError as one line (`orca: error: ...`) with exit status 2 and no
traceback, like a bad argument, even when it is found after work has started (e.g. `orca
compare` with no benchmark run yet)."""

from __future__ import annotations


class UserError(Exception):
    """The request cannot be met as asked; the message says what to do instead."""


class NoResultsError(UserError, LookupError):
    """There is nothing yet to read: no benchmark run, or one without finished runs."""
