"""Concurrent runs share a stage: one computes it, the others wait and read it as Cached."""

from __future__ import annotations

import json
import multiprocessing
import os
import threading
import time

from prefect import flow, task
from prefect.task_runners import ThreadPoolTaskRunner

from runtime.locks import StateLockManager
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


def _hold_lock_then_die(state_root: str, key: str, ready) -> None:
    """In a child process: take the lock and exit without releasing it (like a SIGKILL)."""
    os.environ["ORCA_HOME"] = state_root
    from runtime.locks import StateLockManager

    StateLockManager().acquire_lock(key, holder="child")
    ready.set()
    os._exit(0)


def test_a_lock_of_a_dead_process_is_broken(tmp_path, monkeypatch):
    monkeypatch.setenv("ORCA_HOME", str(tmp_path))
    context = multiprocessing.get_context("spawn")
    ready = context.Event()
    child = context.Process(target=_hold_lock_then_die, args=(str(tmp_path), "k", ready))
    child.start()
    child.join(60)
    assert ready.is_set() and child.exitcode == 0
    lock_file = tmp_path / "locks" / "k.lock"
    assert json.loads(lock_file.read_text())["pid"] == child.pid  # left behind
    manager = StateLockManager()
    assert not manager.is_locked("k")  # its holder is gone: broken
    assert not lock_file.exists()
    assert manager.acquire_lock("k", holder="me", acquire_timeout=1)


def test_a_lock_held_by_a_live_process_blocks_others(tmp_path, monkeypatch):
    monkeypatch.setenv("ORCA_HOME", str(tmp_path))
    first, second = StateLockManager(), StateLockManager()
    assert first.acquire_lock("k", holder="a")
    assert second.is_locked("k")
    assert not second.acquire_lock("k", holder="b", acquire_timeout=0.3)
    first.release_lock("k", holder="a")
    assert second.acquire_lock("k", holder="b", acquire_timeout=1)
    assert (tmp_path / "locks" / "k.lock").is_file()  # under the active state directory


def _contend(state_root: str, key: str, delay: float, barrier, results) -> None:
    """In a child process: wait for the other contender, take the lock, hold it 0.5 s.
    Deciding that a lock's holder is dead takes `delay` seconds longer: with 0.3 s for one
    contender and 0.6 s for the other, the second decides "dead" on the lock the first has
    since broken and replaced with its own, the interleaving that lets both take it."""
    os.environ["ORCA_HOME"] = state_root
    from runtime.locks import StateLockManager

    decide = StateLockManager._orphaned

    def slow_orphaned(self, lock_key: str) -> bool:
        dead = decide(self, lock_key)
        if dead:
            time.sleep(delay)
        return dead

    StateLockManager._orphaned = slow_orphaned
    manager, holder = StateLockManager(), f"process-{os.getpid()}"
    barrier.wait(60)
    began = time.time()
    taken = manager.acquire_lock(key, holder=holder, acquire_timeout=30)
    got = time.time()
    time.sleep(0.5)
    released = time.time()
    try:
        manager.release_lock(key, holder=holder)
        error = None
    except Exception as failure:  # e.g. the lock file is someone else's by now
        error = f"{type(failure).__name__}: {failure}"
    results.put((began, got, released, taken, error))


def test_two_processes_breaking_one_dead_lock_take_it_one_at_a_time(tmp_path, monkeypatch):
    monkeypatch.setenv("ORCA_HOME", str(tmp_path))
    context = multiprocessing.get_context("spawn")
    ready = context.Event()
    dead = context.Process(target=_hold_lock_then_die, args=(str(tmp_path), "k", ready))
    dead.start()
    dead.join(60)
    assert ready.is_set() and (tmp_path / "locks" / "k.lock").exists()
    barrier, results = context.Barrier(2), context.Queue()
    contenders = [
        context.Process(target=_contend, args=(str(tmp_path), "k", delay, barrier, results))
        for delay in (0.3, 0.6)
    ]
    for process in contenders:
        process.start()
    outcomes = sorted(results.get(timeout=120) for _ in contenders)
    for process in contenders:
        process.join(60)
        assert process.exitcode == 0
    (
        (began_a, got_a, released_a, taken_a, error_a),
        (began_b, got_b, released_b, taken_b, error_b),
    ) = outcomes
    assert taken_a and taken_b
    # They contended: both were waiting for the lock before either had it.
    assert max(began_a, began_b) < min(got_a, got_b)
    # And held it one at a time.
    first, second = sorted([(got_a, released_a), (got_b, released_b)])
    assert first[1] <= second[0], f"both held the lock at once: {first} and {second}"
    assert error_a is None and error_b is None, (error_a, error_b)
