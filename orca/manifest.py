"""What a stage wrote, so that a damaged cached output is never taken for a result.

`write_manifest(directory)` records every file under a stage's output directory (size,
modification time, SHA-256) in `MANIFEST_NAME`; stages write it as the last step before
their directory is renamed into place (`orca.atomic.atomic_directory(manifest=True)`).
`manifest_problem(directory)` says what no longer matches: a file missing, a size changed
(a truncated file), or content changed. A file whose size and modification time are as
recorded is taken as unchanged without hashing it again, so checking a large cached
output costs a `stat` per file; a file rewritten since is hashed and compared.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from orca.fingerprint import fingerprint_file  # SHA-256 of the bytes, hex, shortened

MANIFEST_NAME = ".orca-manifest.json"


def _files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file() and p.name != MANIFEST_NAME)


def write_manifest(directory: str | Path) -> Path:
    """Record every file under `directory` in its manifest; return the manifest's path."""
    directory = Path(directory)
    entries = {}
    for path in _files(directory):
        stat = path.stat()
        entries[path.relative_to(directory).as_posix()] = {
            "size": stat.st_size,
            "mtime_ns": stat.st_mtime_ns,
            "sha256": fingerprint_file(path),
        }
    manifest = directory / MANIFEST_NAME
    manifest.write_text(json.dumps({"files": entries}, indent=1, sort_keys=True))
    with open(manifest, "rb") as handle:
        os.fsync(handle.fileno())
    return manifest


def manifest_problem(directory: str | Path) -> str | None:
    """None when every file the manifest of `directory` records is there as written;
    otherwise what is wrong, naming the file."""
    directory = Path(directory)
    manifest = directory / MANIFEST_NAME
    try:
        entries = json.loads(manifest.read_text())["files"]
    except FileNotFoundError:
        return f"{manifest} is missing: the directory was not written whole by orca"
    except (ValueError, KeyError, TypeError) as err:
        return f"{manifest} is unreadable ({type(err).__name__}: {err})"
    for name, entry in sorted(entries.items()):
        path = directory / name
        try:
            stat = path.stat()
        except FileNotFoundError:
            return f"{path} is missing"
        if stat.st_size != entry["size"]:
            return f"{path} has {stat.st_size} bytes, {entry['size']} were written (truncated?)"
        if stat.st_mtime_ns != entry["mtime_ns"] and fingerprint_file(path) != entry["sha256"]:
            return f"{path} was changed after it was written (its SHA-256 differs)"
    return None
