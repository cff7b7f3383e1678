"""`orca run TASK` end to end for every task of the embedded demo suite, on the tiny body.

The data is each task's real data (packaged datasets, orca's PDE solvers); only the body
and the epoch counts are shrunk, so this checks that every demo task's shapes, loss,
metric and predictor go through all five stages from the command line.
"""

from __future__ import annotations

import json
import math

import pytest

from cli.main import main
from orca.suites import SUITES

SHRINK = [
    "--set",
    "proxy.max_examples=60",
    "--set",
    "proxy.max_tokens=16",
    "--set",
    "align.epochs=1",
    "--set",
    "align.samples_per_class=8",
    "--set",
    "refine.epochs=1",
]


@pytest.mark.parametrize("task", SUITES.get("demo"))
def test_orca_run_works_for_every_demo_task(task, prefect_harness, tiny_bert_dir, capsys):
    assert main(["run", task, "--backbone", str(tiny_bert_dir), *SHRINK, "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["task"] == task
    assert set(result["states"]) == {"ingest", "proxy", "align", "refine", "evaluate"}
    assert set(result["states"].values()) <= {"Completed", "Cached"}
    assert math.isfinite(result["value"])
    assert result["registered_model"].startswith(f"orca-{task}/")
