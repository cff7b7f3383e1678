"""`orca retry`: run a failed orca flow run again, its finished stages from the cache.

    orca retry FLOW_RUN_ID [--json]

FLOW_RUN_ID is the `flow_run_id` that `orca run --json` prints (or the Prefect UI shows).
Its flow name and parameters are read back from Prefect: it must be a run of the pipeline
flow or of a per-stage flow, in a final state (Failed, Crashed, Cancelled or Completed).
The same flow run is then run again with the same parameters, as `prefect flow-run retry`
does: the stages that completed come back Cached, so only the failed stage and those after
it do any work, and the flow run ends Completed.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from typing import Annotated, Any
from uuid import UUID

import typer

from cli.command import Args, Command, CommandFailed
from cli.options import Json


def define_retry(
    flow_run_id: Annotated[
        str, typer.Argument(metavar="FLOW_RUN_ID", help="as `orca run --json` prints it")
    ],
    json: Json = False,
) -> Args:
    """Run a failed pipeline or stage flow run again: its finished stages come back Cached."""
    return Args(**locals())


def retryable_flows() -> dict[str, Any]:
    """The orca flows a run of which can be retried, by flow name."""
    from flows import stage_flows
    from flows.pipeline import pipeline

    flows = (
        pipeline,
        stage_flows.ingest_stage,
        stage_flows.proxy_stage,
        stage_flows.align_stage,
        stage_flows.refine_stage,
        stage_flows.evaluate_stage,
    )
    return {each.name: each for each in flows}


@dataclass(frozen=True)
class Retry:
    """A checked flow run to run again: its flow, and its parameters as it was given them."""

    flow: Any  # prefect.Flow
    flow_run_id: UUID
    parameters: dict[str, Any]


def prepare(args: Args) -> Retry:
    """Read the flow run back and check it can be retried; ValueError says why not."""
    from prefect import get_client
    from prefect.exceptions import ObjectNotFound

    from runtime.prefect_api import shared_prefect_api

    try:
        flow_run_id = UUID(args.flow_run_id)
    except ValueError:
        raise ValueError(
            f"FLOW_RUN_ID {args.flow_run_id!r} is not a flow run id; expected a UUID such as "
            "the flow_run_id that `orca run --json` prints"
        ) from None
    with shared_prefect_api(), get_client(sync_client=True) as client:
        try:
            flow_run = client.read_flow_run(flow_run_id)
        except ObjectNotFound:
            raise ValueError(f"no flow run {flow_run_id} in {_prefect_api()}") from None
        flow_name = client.read_flow(flow_run.flow_id).name
    flows = retryable_flows()
    if flow_name not in flows:
        raise ValueError(
            f"flow run {flow_run_id} is a run of {flow_name!r}, not an orca pipeline or "
            f"stage flow; runs of these can be retried: {', '.join(flows)}"
        )
    state = flow_run.state
    if state is None or not state.is_final():
        raise ValueError(
            f"flow run {flow_run_id} is {state.name if state else 'not started'}; only a "
            "finished run (Failed, Crashed, Cancelled or Completed) can be retried. A run "
            "whose process was killed stays Running: run its `orca run` command again"
        )
    flow = flows[flow_name]
    try:
        flow.validate_parameters(flow_run.parameters)
    except Exception as error:  # prefect's ParameterTypeError, or a config's ValueError
        raise ValueError(
            f"flow run {flow_run_id}'s parameters are no longer valid for {flow_name}: {error}"
        ) from None
    return Retry(flow, flow_run_id, dict(flow_run.parameters))


def run(args: Args, retry: Retry) -> dict[str, Any]:
    """Schedule the flow run again and run it here; print its summary (or JSON)."""
    from cli.progress import progress_bars
    from runtime.prefect_api import run_flow_run_again

    started = time.perf_counter()
    with progress_bars(not args.json, label=f"retry {retry.flow.name}"):
        state = run_flow_run_again(
            retry.flow, retry.flow_run_id, retry.parameters, "Retried by `orca retry`"
        )
    result = {
        **result_or_exit(state),
        "flow": retry.flow.name,
        "flow_run_id": str(retry.flow_run_id),
        "wall_seconds": round(time.perf_counter() - started, 2),
    }
    if args.json:
        print(json.dumps(result))
        return result
    print(f"\nflow run {retry.flow_run_id} ({retry.flow.name}) retried and completed")
    print("stages: " + ", ".join(f"{name}={state}" for name, state in result["states"].items()))
    if "metric" in result:
        print(f"test {result['metric']} = {result['value']:.4f}")
    print(f"{result['wall_seconds']} s")
    return result


def result_or_exit(state) -> Any:
    """The result of a flow run that ended in `state`. If it did not complete, say on stderr
    how to retry it and raise CommandFailed: exit status 1 (Prefect has already logged the
    traceback)."""
    if state.is_completed():
        return state.result()
    flow_run_id = state.state_details.flow_run_id
    print(
        f"orca: error: flow run {flow_run_id} ended {state.name}: {state.message}\n"
        f"orca: `orca retry {flow_run_id}` runs it again; the stages that finished come "
        "back Cached",
        file=sys.stderr,
    )
    raise CommandFailed(f"flow run {flow_run_id} ended {state.name}")


def _prefect_api() -> str:
    """Where this process's Prefect flow runs live, for error messages."""
    url = os.environ.get("PREFECT_API_URL")
    if url:
        return f"the Prefect API at {url}"
    return f"the Prefect database under {os.environ.get('PREFECT_HOME', '~/.prefect')}"


COMMANDS = {"retry": Command(define_retry, prepare, run, uses_prefect=True)}
