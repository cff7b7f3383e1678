"""Concurrent runs share a stage: one computes it, the others wait and read it as Cached."""

from __future__ import annotations

import threading
import time

from prefect import flow, task
from prefect.task_runners import ThreadPoolTaskRunner

from tasks.caching import stage_cache_policy

CALLS: list[str] = []
CALLS_LOCK = threading.Lock()


@task(
    name="slow-shared-stage",
    cache_policy=stage_cache_policy("lock-test", writes_outputs=False),
    persist_result=True,
    result_serializer="json",
)
def slow_shared_stage(value: int) -> dict:
    with CALLS_LOCK:
        CALLS.append(threading.current_thread().name)
    time.sleep(1.0)  # long enough that every other worker arrives while this one holds the key
    return {"value": value * 2}


@flow(task_runner=ThreadPoolTaskRunner(max_workers=3))
def three_workers(value: int) -> list[tuple[str, dict]]:
    futures = [slow_shared_stage.submit(value) for _ in range(3)]
    states = [future.wait() or future.state for future in futures]
    return [(state.name, state.result()) for state in states]


def test_concurrent_runs_compute_a_shared_stage_once(prefect_harness):
    CALLS.clear()
    outcomes = three_workers(21)
    assert len(CALLS) == 1, f"the stage body ran {len(CALLS)} times: {CALLS}"
    assert sorted(name for name, _ in outcomes) == ["Cached", "Cached", "Completed"]
    assert all(result == {"value": 42} for _, result in outcomes)


def test_a_different_key_is_not_blocked_and_is_computed(prefect_harness):
    CALLS.clear()
    outcomes = three_workers(5)
    assert len(CALLS) == 1
    assert all(result == {"value": 10} for _, result in outcomes)
