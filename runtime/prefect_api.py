"""The Prefect API that one `orca` command, its flows and its worker processes share.

With PREFECT_API_URL set, that server is used. Otherwise orca runs Prefect's own temporary
local server, the one Prefect's ephemeral mode starts (SubprocessASGIServer, on
127.0.0.1), once per command rather than once per process. How it is started is chosen by
$ORCA_PREFECT_API, from API_MODES:

- `background` (the default for the `orca` command): the state directory's one server,
  shared by every command on it (runtime/state_server.py). `boot()`, called as soon as the
  command's arguments are parsed, finds it or starts it in a helper process while this
  process imports torch and the flows: starting them one after the other cost about 10 s
  per command on 2 cores. The helper stops the server when the last command
  using it exits, even when it is killed, so no server is left behind.
- `inline`: the server is started in this process's thread when first needed, as
  Prefect's ephemeral mode would. The tests use it (tests/conftest.py), so that a test
  process talks to one server however it reaches Prefect.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from orca.registry import Registry
from runtime.state_server import Connection

API_MODE_ENV = "ORCA_PREFECT_API"


@dataclass(frozen=True)
class ApiMode:
    """`boot()` starts the server early (or does nothing); `url()` waits for it."""

    boot: Callable[[], None]
    url: Callable[[], str]


API_MODES: Registry[ApiMode] = Registry("Prefect API mode")


def api_mode() -> ApiMode:
    name = os.environ.get(API_MODE_ENV, "background")
    if name not in API_MODES.names():
        raise ValueError(
            f"${API_MODE_ENV}={name!r} is not a Prefect API mode; "
            f"expected one of: {', '.join(API_MODES.names())}"
        )
    return API_MODES.get(name)


def _configured_url() -> str | None:
    """PREFECT_API_URL from the environment or the active Prefect profile."""
    if os.environ.get("PREFECT_API_URL"):
        return os.environ["PREFECT_API_URL"]
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value() or None


def boot() -> None:
    """Start the shared server now, without waiting for it (a no-op where an API is set)."""
    if not os.environ.get("PREFECT_API_URL"):
        api_mode().boot()


@contextmanager
def shared_prefect_api() -> Iterator[str]:
    """Yield the API URL that the flows and worker processes of this command use, set as
    PREFECT_API_URL for the duration: as a Prefect setting, and for the threads that start
    without that setting (`_threads_use_api`)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    configured = _configured_url()
    if configured:
        yield configured
        return
    url = api_mode().url()
    with (
        temporary_settings(updates={PREFECT_API_URL: url, **heartbeats_off()}),
        _threads_use_api(url),
    ):
        yield url


@contextmanager
def _threads_use_api(url: str) -> Iterator[None]:
    """PREFECT_API_URL=`url` in os.environ and in Prefect's process-wide settings, which a
    new thread gets instead of the settings of the thread that started it; then as before.

    Prefect's process pool forwards its workers' events from a thread of its own. Without
    this, that thread's events worker found no API URL and started Prefect's temporary
    server in the command's process, a second server on the same database, and sent the
    events there; one was seen left running after its command had exited. The process-wide
    settings are rebuilt from the environment with
    prefect.context.refresh_global_settings_context (not public)."""
    from prefect.context import refresh_global_settings_context

    before = os.environ.get("PREFECT_API_URL")
    os.environ["PREFECT_API_URL"] = url
    refresh_global_settings_context()
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = before
        refresh_global_settings_context()


HEARTBEAT_SETTINGS = ("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", "PREFECT_RUNNER_HEARTBEAT_FREQUENCY")


def heartbeats_off() -> dict[Any, Any]:
    """Prefect settings that stop flow runs sending heartbeats, or none where the user set
    the heartbeat frequency (in the environment or the Prefect profile).

    Heartbeats only matter to a server that watches for them (a zombie-run automation), and
    each costs its flow run up to a second at the end: Prefect joins the heartbeat thread,
    which sleeps in one-second steps. So they are off where nobody asked for them: in the
    nested pipeline runs of a sweep, and in every flow run on this command's own local
    server (`shared_prefect_api`). Someone who watches heartbeats sets the frequency, and
    then every flow run sends them.
    """
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY
    from prefect.settings.profiles import load_current_profile

    profile = {setting.name for setting in load_current_profile().settings}
    if any(name in os.environ or name in profile for name in HEARTBEAT_SETTINGS):
        return {}
    return {PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}


# --- background: the state directory's shared server (runtime/state_server.py) ------------

API_MODES.register("background", ApiMode(boot=Connection.start, url=Connection.wait))


# --- inline: Prefect's ephemeral server, in this process --------------------------------


def _inline_url() -> str:
    from prefect.server.api.server import SubprocessASGIServer

    from runtime import mlflow_db, team_db
    from runtime.prefect_db import seed_state_database

    with team_db.setup_lock():  # a team database is migrated by one process at a time
        seed_state_database()
        mlflow_db.seed_state_database()
        mlflow_db.prepare_store()
        server = SubprocessASGIServer()  # the same instance ephemeral mode would start
        server.start()
    return server.api_url


API_MODES.register("inline", ApiMode(boot=lambda: None, url=_inline_url))


def run_flow_run_again(flow: Any, flow_run_id: Any, parameters: dict[str, Any], message: str):
    """Schedule the existing flow run `flow_run_id` of `flow` again and run it in this
    process with `parameters`; return its final state. Uses Prefect's flow engine directly
    (prefect.flow_engine.run_flow, not public): Prefect's public API starts new flow runs
    only."""
    from prefect import get_client
    from prefect.flow_engine import run_flow
    from prefect.states import Scheduled

    with get_client(sync_client=True) as client:
        client.set_flow_run_state(flow_run_id, Scheduled(message=message), force=True)
        flow_run = client.read_flow_run(flow_run_id)
    return run_flow(flow, flow_run=flow_run, parameters=parameters, return_type="state")


def default_result_storage() -> Any:
    """Prefect's default result storage block, called in its blocking form (the private
    `_sync=True` of Prefect's sync/async dispatch) so that it works inside a running event
    loop too, where a task's cache key is computed."""
    from prefect.results import get_default_result_storage

    return get_default_result_storage(_sync=True)
