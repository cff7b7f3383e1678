"""Atomic writes: a reader never sees a half-written file or directory.

Files are written to a temporary sibling and renamed into place with os.replace, which is
atomic on POSIX within one filesystem. Directories are built under a temporary name and
renamed in one step, so a crash mid-stage leaves either nothing or the complete output.
A failed write (a full disk, say) raises an OSError with the same errno that names the
target, and leaves whatever was at the target before untouched.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path


def _write_error(path: Path, tmp: Path, err: OSError) -> OSError:
    """An error while writing `path` through `tmp`, as the same kind of OSError (errno kept:
    ENOSPC stays ENOSPC) naming `path`. An error about another file (an input the writer
    read) or one that already names `path` is returned unchanged."""
    about = err.filename
    if (about is not None and not str(about).startswith(str(tmp))) or str(path) in str(err):
        return err
    reason = getattr(err, "write_failure", None) or err.strerror or str(err) or type(err).__name__
    message = f"could not write {path} ({reason}); nothing was written in its place"
    error = OSError(err.errno, message) if err.errno is not None else OSError(message)
    error.write_failure = reason  # an enclosing atomic_directory reports the same reason
    return error


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it is renamed to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        yield tmp
        if tmp.is_file():
            with open(tmp, "rb") as handle:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as err:
        raise _write_error(path, tmp, err) from err
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_directory(path: str | Path, *, manifest: bool = False) -> Iterator[Path]:
    """Yield a temporary directory; on success it replaces `path` as a whole. With
    `manifest`, its files are recorded first (orca.manifest), so that a later change to
    any of them can be detected."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    try:
        yield tmp
        if manifest:
            from orca.manifest import write_manifest

            write_manifest(tmp)
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except OSError as err:
        raise _write_error(path, tmp, err) from err
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
