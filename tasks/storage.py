"""Where the cached tasks keep their result records: Prefect's local storage by default, or
the path or fsspec URL in ORCA_RESULT_STORAGE (runtime.state).

The setting is read when the task modules are imported, as Prefect reads its own settings
(runtime.state.activate sets both before that). A local path (or file:// URL) is handed to
Prefect as a Path. Prefect takes other storage only as a block saved on its server, so a
URL becomes a block named after it (`orca-retrying-remote-file-system/orca-results-...`), a
RemoteFileSystem whose reads and writes retry transient network errors (runtime/remote_io.py):
the tasks name it, and `ensure_result_storage`, called by each flow before its first cached
task, saves it in the current Prefect API. Every process that runs the tasks loads it from
there, so a Dask worker started elsewhere writes where the flow reads.

`drop_record` lets the stage cache key delete a record whose artifacts are gone. It works on
a local path and on any fsspec URL; on another kind of storage block (e.g. a saved S3Bucket
block set as Prefect's default storage) it cannot see the records, says so once in the log,
and a deleted artifact directory is then not detected there.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any

import fsspec
from prefect.filesystems import LocalFileSystem, RemoteFileSystem
from prefect.settings import PREFECT_API_URL

from runtime.remote_io import RetryingRemoteFileSystem, retry_transient
from runtime.state import RESULT_STORAGE_ENV, local_path

logger = logging.getLogger(__name__)
_WARNED: set[str] = set()
_SAVED: set[tuple[str, str]] = set()  # (Prefect API, URL) pairs this process has saved


def _url() -> str | None:
    """ORCA_RESULT_STORAGE when it is a URL of a filesystem other than the local one."""
    location = os.environ.get(RESULT_STORAGE_ENV)
    return location if location and local_path(location) is None else None


def block_name(url: str) -> str:
    """The name of the RemoteFileSystem block that stores records at `url`."""
    return f"orca-results-{hashlib.sha256(url.encode()).hexdigest()[:12]}"


def result_storage() -> Path | str | None:
    """The cached tasks' `result_storage`: None (Prefect's default, the state directory's
    results/), a Path for a local path or file:// URL, else the slug of its storage block."""
    location = os.environ.get(RESULT_STORAGE_ENV)
    if not location:
        return None
    url = _url()
    if url is None:
        return local_path(location)
    return f"{RetryingRemoteFileSystem.get_block_type_slug()}/{block_name(url)}"


def ensure_result_storage() -> None:
    """Save the storage block that `result_storage()` names in the current Prefect
    API (once per process and API); nothing to do for local storage."""
    url = _url()
    api = str(PREFECT_API_URL.value() or "ephemeral")
    if url is None or (api, url) in _SAVED:
        return
    RetryingRemoteFileSystem(basepath=url).save(block_name(url), overwrite=True)
    _SAVED.add((api, url))


def record_url(storage: Any, key: str) -> str | None:
    """The path or URL of the record `key` in `storage`; None if it has no fsspec base path."""
    if isinstance(storage, (LocalFileSystem, RemoteFileSystem)) and storage.basepath:
        return f"{str(storage.basepath).rstrip('/')}/{key}"
    kind = type(storage).__name__
    if kind not in _WARNED:
        _WARNED.add(kind)
        logger.warning(
            "result storage %s has no fsspec base path: a cache record whose stage artifacts "
            "were deleted cannot be dropped there, so that stage would return a dangling path",
            kind,
        )
    return None


def drop_record(storage: Any, key: str) -> bool:
    """Delete the record `key` from `storage` if it exists; True if one was deleted."""
    url = record_url(storage, key)
    if url is None:
        return False
    filesystem, path = fsspec.core.url_to_fs(url)

    def drop() -> bool:
        if not filesystem.exists(path):
            return False
        filesystem.rm(path)
        return True

    return retry_transient(drop, f"deleting the stale record {url}")
