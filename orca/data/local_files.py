"""Shared helpers for reading datasets a user keeps on disk.

`data_root()` is where published datasets are looked for ($ORCA_DATA_DIR, default
~/.cache/orca/data; the CLI's --data-dir sets it). `restricted_load` unpickles data files
that hold only numpy arrays, numbers, strings and containers, and refuses any other global,
so a data file can never run code.
"""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path
from typing import Any, ClassVar

DEFAULT_DATA_DIR = "~/.cache/orca/data"


def data_root() -> Path:
    return Path(os.environ.get("ORCA_DATA_DIR") or DEFAULT_DATA_DIR).expanduser()


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Rebuild numpy arrays, numpy scalars and builtin containers; refuse any other global."""

    ALLOWED: ClassVar[set[tuple[str, str]]] = {
        (module, name)
        for module in ("numpy.core.multiarray", "numpy._core.multiarray")
        for name in ("_reconstruct", "scalar")
    } | {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        # Protocol-2 pickles written by Python 3 store bytes as _codecs.encode(text, "latin1").
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name} from a data file (only numpy arrays allowed)"
            )
        return super().find_class(module, name)


def restricted_load(handle: io.BufferedIOBase | Any, encoding: str = "latin1") -> Any:
    """Unpickle a stream holding only numpy arrays/scalars, strings, numbers and containers.

    encoding "latin1" reads numpy arrays pickled by Python 2 too; "bytes" keeps Python-2
    strings as bytes (the CIFAR batches' keys).
    """
    return _NumpyOnlyUnpickler(handle, encoding=encoding).load()
