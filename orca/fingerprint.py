"""Content fingerprints: short, stable hashes of files, arrays, JSON values and source code.

Stage cache keys are built from these, so that a cache hit means "same inputs, same code".
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

DIGEST_CHARS = 16


def _digest(h: hashlib._Hash) -> str:
    return h.hexdigest()[:DIGEST_CHARS]


def fingerprint_json(value: Any) -> str:
    """Hash of a JSON-serialisable value, independent of dict key order."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return _digest(hashlib.sha256(text.encode()))


def fingerprint_arrays(*arrays: np.ndarray) -> str:
    """Hash of arrays' dtypes, shapes and bytes."""
    h = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        h.update(f"{array.dtype.str}{array.shape}".encode())
        h.update(array.tobytes())
    return _digest(h)


def fingerprint_file(path: str | Path, chunk_bytes: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_bytes):
            h.update(chunk)
    return _digest(h)


def fingerprint_sources(roots: Iterable[str | Path]) -> str:
    """Hash of every `*.py` file under the given package directories (path and text)."""
    h = hashlib.sha256()
    for root in roots:
        root = Path(root)
        for path in sorted(root.rglob("*.py")):
            h.update(str(path.relative_to(root.parent)).encode())
            h.update(path.read_bytes())
    return _digest(h)
