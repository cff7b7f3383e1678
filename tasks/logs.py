"""A logger that works inside a Prefect run and outside it (tasks called through `.fn()`)."""

from __future__ import annotations

import logging

from prefect import get_run_logger
from prefect.exceptions import MissingContextError
from prefect.logging import get_logger


def run_logger() -> logging.Logger | logging.LoggerAdapter:
    try:
        return get_run_logger()
    except MissingContextError:
        return get_logger("orca.tasks")
