"""Re-executing a failed stage: `orca retry FLOW_RUN_ID`, and the stage's own flow.

A failure is injected into refine with ORCA_FAIL_STAGE; either way of running it again
brings the earlier stages back Cached and runs refine (and, for the pipeline, evaluate).
"""

from __future__ import annotations

import json
import re

import pytest
from conftest import set_args

from cli.main import main
from orca.config.pipeline import PipelineConfig
from tasks.faults import FAIL_STAGE_ENV_VAR, fail_if_injected

TINY = {
    "proxy": {"max_examples": 60, "max_tokens": 16},
    "align": {"epochs": 1, "samples_per_class": 8},
    "refine": {"epochs": 1, "batch_size": 16, "lr": 5e-4},
}
TINY_ARGS = set_args(TINY)


def _failed_run_id(stderr: str) -> str:
    found = re.search(r"`orca retry ([0-9a-f-]{36})`", stderr)
    assert found, stderr[-2000:]
    return found.group(1)


def test_the_fault_hook_names_its_stage(monkeypatch):
    monkeypatch.setenv(FAIL_STAGE_ENV_VAR, "refine")
    fail_if_injected("align")  # another stage runs
    with pytest.raises(RuntimeError, match=r"stage 'refine' failed: injected by ORCA_FAIL_STAGE"):
        fail_if_injected("refine")
    monkeypatch.setenv(FAIL_STAGE_ENV_VAR, "refin")
    with pytest.raises(
        ValueError,
        match=r"ORCA_FAIL_STAGE: unknown stage 'refin'; valid stages: ingest",
    ):
        fail_if_injected("ingest")


def test_orca_retry_completes_a_run_that_failed_in_refine(
    prefect_harness, tiny_bert_dir, capsys, monkeypatch
):
    argv = ["run", "gunpoint", "--backbone", str(tiny_bert_dir), *TINY_ARGS, "--json"]
    monkeypatch.setenv(FAIL_STAGE_ENV_VAR, "refine")
    assert main(argv) == 1
    flow_run_id = _failed_run_id(capsys.readouterr().err)

    monkeypatch.delenv(FAIL_STAGE_ENV_VAR)
    assert main(["retry", flow_run_id, "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["flow"] == "orca-pipeline" and result["flow_run_id"] == flow_run_id
    assert result["states"] == {
        "ingest": "Cached",
        "proxy": "Cached",
        "align": "Cached",
        "refine": "Completed",
        "evaluate": "Completed",
    }
    from prefect import get_client

    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(flow_run_id)
    assert flow_run.state.is_completed() and flow_run.run_count == 2  # the same run, retried


def test_the_refine_stage_flow_reruns_refine_alone(prefect_harness, tiny_bert_dir, monkeypatch):
    from flows.pipeline import pipeline
    from flows.stage_flows import refine_stage

    # Another refine lr than the test above: the earlier stages are shared, refine is not.
    overrides = {**TINY, "refine": {**TINY["refine"], "lr": 7e-4}}
    config = PipelineConfig.for_task("gunpoint", backbone=str(tiny_bert_dir), overrides=overrides)
    monkeypatch.setenv(FAIL_STAGE_ENV_VAR, "refine")
    with pytest.raises(RuntimeError, match="injected by ORCA_FAIL_STAGE=refine"):
        pipeline(config)
    monkeypatch.delenv(FAIL_STAGE_ENV_VAR)
    result = refine_stage(config)
    assert result["states"] == {
        "ingest": "Cached",
        "proxy": "Cached",
        "align": "Cached",
        "refine": "Completed",
    }
    assert result["reference"]["path"]


def test_retry_rejects_unknown_and_foreign_flow_runs(prefect_harness, capsys):
    from prefect import flow

    assert main(["retry", "not-a-uuid"]) == 2
    assert "is not a flow run id" in capsys.readouterr().err
    assert main(["retry", "00000000-0000-4000-8000-000000000000"]) == 2
    assert "no flow run 00000000-0000-4000-8000-000000000000" in capsys.readouterr().err

    @flow(name="not-orca")
    def not_orca() -> int:
        return 1

    state = not_orca(return_state=True)
    assert main(["retry", str(state.state_details.flow_run_id)]) == 2
    error = capsys.readouterr().err
    assert "a run of 'not-orca', not an orca pipeline or stage flow" in error
    assert "orca-pipeline" in error and "orca-stage-refine" in error
