"""Cache keys for stage tasks: inputs' content fingerprints plus a code version.

A stage's key hashes its parameters (configs as dicts; upstream references reduced to their
content fingerprints, so paths never matter) together with CODE_VERSION, a hash of the
orca/ and tasks/ sources. Prefect's own TASK_SOURCE policy hashes only the task body, which
misses changes in the library it calls.

The key also names the stage's artifact directory. If a cached record exists but its
artifacts were deleted, or any file in them no longer matches the manifest the stage wrote
with them (orca/manifest.py: missing, truncated or altered), the record is dropped, with a
warning naming the file, so the stage recomputes instead of handing a damaged result
downstream; the record is looked for in the task's own result storage, a local path or an
fsspec URL (tasks/storage.py).

`stage_cache_policy` wraps the key in a SERIALIZABLE Prefect cache policy whose lock every
process of the state directory shares (runtime.locks.StateLockManager): when the sweep
flow runs several pipelines at once (`--workers N`, worker processes), or two `orca bench`
commands run together, the first run to reach a shared stage (a task's ingest, a body's
proxy features) computes it while the others wait for its record and then read it as
Cached, instead of computing the same thing side by side. A lock whose holder process died
(SIGKILL) is broken by the next run that meets it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prefect.cache_policies import CacheKeyFnPolicy, CachePolicy
from prefect.logging import get_logger

import orca
from orca.config.base import Config
from orca.fingerprint import fingerprint_json, fingerprint_sources
from orca.manifest import manifest_problem
from runtime.locks import StateLockManager
from runtime.prefect_api import default_result_storage
from runtime.state import StateDir
from tasks.storage import drop_record

LOGGER = get_logger("orca.cache")
CODE_VERSION = fingerprint_sources([Path(orca.__file__).parent, Path(__file__).parent])


def _key_value(value: Any) -> Any:
    if isinstance(value, Config):
        return value.to_dict()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, dict) and "fingerprint" in value:
        return {"fingerprint": value["fingerprint"]}
    return value


def stage_key(stage: str, parameters: dict[str, Any]) -> str:
    inputs = {name: _key_value(value) for name, value in sorted(parameters.items())}
    return f"{stage}-{fingerprint_json({'code': CODE_VERSION, 'inputs': inputs})}"


def stage_dir(stage: str, parameters: dict[str, Any]) -> Path:
    """Where a stage writes its outputs for these parameters."""
    return StateDir.from_env().artifacts / stage / stage_key(stage, parameters)


def _record_storage(context: Any) -> Any:
    """The storage the task's records go to: its result store's (a local path or an fsspec
    URL, see tasks/storage.py), or Prefect's default outside a task run."""
    store = getattr(context, "result_store", None)
    storage = getattr(store, "result_storage", None)
    return storage if storage is not None else default_result_storage()


def stage_cache_key(
    stage: str, writes_outputs: bool = True
) -> Callable[[Any, dict[str, Any]], str]:
    """A Prefect cache_key_fn for a stage task; `writes_outputs`: its files live in stage_dir()."""

    def cache_key(context: Any, parameters: dict[str, Any]) -> str:
        key = stage_key(stage, parameters)
        outputs = StateDir.from_env().artifacts / stage / key
        if writes_outputs and not outputs.exists():
            drop_record(_record_storage(context), key)  # stale: its artifacts are gone
        elif writes_outputs and (problem := manifest_problem(outputs)) is not None:
            LOGGER.warning("stage %s: cached outputs are damaged (%s); recomputing", stage, problem)
            drop_record(_record_storage(context), key)
        return key

    return cache_key


def stage_cache_policy(stage: str, writes_outputs: bool = True) -> CachePolicy:
    """The Prefect cache policy of a stage task: stage_cache_key under a lock that every
    process of this state directory shares (runtime.locks)."""
    return CacheKeyFnPolicy(cache_key_fn=stage_cache_key(stage, writes_outputs)).configure(
        isolation_level="SERIALIZABLE", lock_manager=StateLockManager()
    )


def pipeline_run_key(context: Any, parameters: dict[str, Any]) -> str:
    """A whole pipeline run's cache key: its config and the code version. The MLflow parent
    it nests under is deliberately not part of it, so a later benchmark reuses the run."""
    config = parameters["config"]
    key = {"code": CODE_VERSION, "config": config.to_dict()}
    if config.family != "classical":  # where the torch stages ran: a CUDA run is not a CPU one
        key["device"] = config.resolved_device
    return f"pipeline-run-{fingerprint_json(key)}"


def pipeline_run_cache_policy() -> CachePolicy:
    """The sweep flow's per-run cache policy, locked like the stages'."""
    return CacheKeyFnPolicy(cache_key_fn=pipeline_run_key).configure(
        isolation_level="SERIALIZABLE", lock_manager=StateLockManager()
    )
