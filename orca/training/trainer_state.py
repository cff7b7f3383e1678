"""Per-epoch checkpoints of the fine-tuning loop, and resuming from them.

A checkpoint directory holds one subdirectory per saved epoch, normally only the newest:

    epoch-0003/
        model.safetensors   model.state_dict() at the end of epoch 3
        best.safetensors    the best-so-far state_dict (a hard link when the file is unchanged)
        trainer.pt          everything else the loop carries: optimizer and scheduler state,
                            the global torch RNG (CPU and CUDA), the shuffling generator,
                            the best score and epoch, the stale-epoch count, the history
        manifest.json       format, epoch, file list and the run's fingerprint; written last

A run stopped by a signal (orca.stopping) is saved mid-epoch, after an optimizer step, as
    epoch-0004-batch-000012/   epoch 4 in progress, its first 12 batches done; trainer.pt
                               adds "partial": the epoch's shuffled order, the batches done
                               and the running loss sum, so the resumed epoch goes on with
                               the same batches (its manifest's "epoch" is the last complete
                               one, 3)
It sorts after epoch-0003 and before epoch-0004.
An epoch directory is assembled under a temporary name (`.epoch-0003.tmp-...`) and renamed
into place in one step; only then are older epoch directories removed (renamed out of sight
first, then deleted). A crash at any moment therefore leaves the previous complete checkpoint
or the new one, never a mixture, and leftovers are swept away on the next save.

Restoring takes the newest epoch directory that has a manifest. One without a manifest is not
a complete checkpoint (our writer never leaves one in place; it would come from a hand-edited
or foreign directory) and is skipped with a warning. One whose manifest is there but whose
files are missing or unreadable raises CheckpointError: it claims to be complete, so quietly
training from scratch would hide the corruption. A checkpoint written with a different setup
(config, seed, data sizes, trainable parameter names/shapes/order) raises CheckpointError
naming every difference, since continuing it would silently mix two runs.

Weights live only in the safetensors files. trainer.pt holds only tensors, dicts, lists,
tuples, numbers, strings, bools and None (optimizer/scheduler state dicts, RNG states as uint8
tensors, history records as plain dicts), so it is read with torch.load(weights_only=True).
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from orca.atomic import atomic_directory, atomic_path
from orca.checkpoint import CheckpointError, file_metadata, load_into, load_state, save_state

FORMAT = 1
MANIFEST = "manifest.json"
MODEL_FILE = "model.safetensors"
BEST_FILE = "best.safetensors"
TRAINER_FILE = "trainer.pt"
FILES = (MODEL_FILE, BEST_FILE, TRAINER_FILE)
_EPOCH_DIR = re.compile(r"^epoch-(\d+)(?:-batch-(\d+))?$")

logger = logging.getLogger(__name__)


@dataclass
class LoopState:
    """What the fine-tuning loop carries from one epoch to the next, apart from the model,
    optimizer, scheduler and random generators. `history` holds records with `to_dict()`."""

    history: list[Any] = field(default_factory=list)
    best_score: float = float("inf")
    best_epoch: int = -1
    stale_epochs: int = 0
    stopped: bool = False
    best_state: dict[str, torch.Tensor] = field(default_factory=dict)
    # Where a stopped epoch resumes: {"epoch", "batches", "order", "running", "seen"}
    partial: dict[str, Any] | None = None


def run_fingerprint(
    config: dict[str, Any],
    *,
    seed: int,
    parameters: Sequence[tuple[str, torch.nn.Parameter]],
    sizes: dict[str, int],
) -> dict[str, Any]:
    """What must match for a checkpoint to be continued: the stage config, the seed, the data
    sizes and the trainable parameters (names, shapes, in optimizer order). JSON-normalised."""
    return json.loads(
        json.dumps(
            {
                "config": config,
                "seed": seed,
                "sizes": sizes,
                "parameters": [[name, list(p.shape)] for name, p in parameters],
            }
        )
    )


def fingerprint_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Human-readable differences between two run fingerprints; empty when they match."""
    out = []
    for key in sorted(set(saved) | set(current)):
        old, new = saved.get(key), current.get(key)
        if old == new:
            continue
        if key in ("config", "sizes") and isinstance(old, dict) and isinstance(new, dict):
            out += [
                f"{key}.{name}: checkpoint {old.get(name)!r}, now {new.get(name)!r}"
                for name in sorted(set(old) | set(new))
                if old.get(name) != new.get(name)
            ]
        elif key == "parameters" and isinstance(old, list) and isinstance(new, list):
            out.append(_parameter_differences(old, new))
        else:
            out.append(f"{key}: checkpoint {old!r}, now {new!r}")
    return out


def _parameter_differences(old: list, new: list) -> str:
    old_shapes, new_shapes = {n: tuple(s) for n, s in old}, {n: tuple(s) for n, s in new}
    parts = []
    for label, names in (
        ("only in checkpoint", sorted(set(old_shapes) - set(new_shapes))),
        ("not in checkpoint", sorted(set(new_shapes) - set(old_shapes))),
        (
            "shape",
            sorted(
                f"{n} {old_shapes[n]} vs {new_shapes[n]}"
                for n in set(old_shapes) & set(new_shapes)
                if old_shapes[n] != new_shapes[n]
            ),
        ),
    ):
        if names:
            parts.append(f"{label}: {', '.join(names[:5])}{' ...' if len(names) > 5 else ''}")
    return "trainable parameters differ (" + ("; ".join(parts) or "order differs") + ")"


class EpochCheckpoints:
    """Save the loop's state at the end of each epoch into `directory`; restore the newest."""

    def __init__(self, directory: str | Path, fingerprint: dict[str, Any]) -> None:
        self.directory = Path(directory)
        self.fingerprint = fingerprint
        self._best_file: tuple[Path, int] | None = None  # newest best file and its epoch

    def epoch_dirs(self) -> list[tuple[tuple[int, float], Path]]:
        """Checkpoint directories present, newest first (complete or not), each with its
        (epoch, batches done) position; an epoch's end counts as infinitely many batches."""
        if not self.directory.is_dir():
            return []
        found = [
            (
                (int(match.group(1)), int(match.group(2)) if match.group(2) else math.inf),
                path,
            )
            for path in self.directory.iterdir()
            if path.is_dir() and (match := _EPOCH_DIR.match(path.name))
        ]
        return sorted(found, reverse=True)

    def latest(self) -> Path | None:
        """The newest complete checkpoint (one with a manifest), or None."""
        for _, path in self.epoch_dirs():
            if (path / MANIFEST).is_file():
                return path
            logger.warning("ignoring incomplete checkpoint %s: it has no %s", path, MANIFEST)
        return None

    def save(
        self,
        loop: LoopState,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        generator: torch.Generator,
        partial: dict[str, Any] | None = None,
    ) -> Path:
        """Save the state at the end of the newest epoch of `loop.history`, or, with
        `partial` (see LoopState.partial), in the middle of the epoch after it."""
        epoch = len(loop.history) - 1
        name = f"epoch-{epoch:04d}"
        if partial is not None:
            name = f"epoch-{partial['epoch']:04d}-batch-{partial['batches']:06d}"
        target = self.directory / name
        trainer = {
            "epoch": epoch,
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                "shuffle": generator.get_state(),
            },
            "loop": {
                "best_score": loop.best_score,
                "best_epoch": loop.best_epoch,
                "stale_epochs": loop.stale_epochs,
                "stopped": loop.stopped,
                "history": [record.to_dict() for record in loop.history],
            },
        }
        if partial is not None:
            trainer["partial"] = partial
        manifest = {
            "format": FORMAT,
            "epoch": epoch,
            "best_epoch": loop.best_epoch,
            "files": list(FILES),
            "fingerprint": self.fingerprint,
        }
        with atomic_directory(target) as tmp:
            _save_weights(tmp / MODEL_FILE, model.state_dict(), {"epoch": str(epoch)})
            self._write_best(tmp, loop, epoch if partial is None else None)
            with atomic_path(tmp / TRAINER_FILE) as path:
                torch.save(trainer, path)
            with atomic_path(tmp / MANIFEST) as path:
                path.write_text(json.dumps(manifest, indent=1))
        _fsync_directory(self.directory)
        self._best_file = (target / BEST_FILE, loop.best_epoch)
        self._sweep(keep=target)
        return target

    def _write_best(self, tmp: Path, loop: LoopState, epoch: int | None) -> None:
        """best.safetensors: linked to an identical file where there is one, else written.
        `epoch`: the epoch whose end model.safetensors holds (None: a mid-epoch state)."""
        if epoch is not None and loop.best_epoch == epoch:
            source: Path | None = tmp / MODEL_FILE  # best_state is this epoch's state_dict
        elif self._best_file is not None and self._best_file[1] == loop.best_epoch:
            source = self._best_file[0]
        else:
            source = None
        if source is not None and source.is_file():
            try:
                os.link(source, tmp / BEST_FILE)
                return
            except OSError:
                pass  # no hard links here: write a copy
        _save_weights(tmp / BEST_FILE, loop.best_state, {"epoch": str(loop.best_epoch)})

    def _sweep(self, keep: Path) -> None:
        """Remove older epoch directories and leftovers of interrupted writes."""
        for path in list(self.directory.iterdir()):
            ours = _EPOCH_DIR.match(path.name) or path.name.startswith((".epoch-", ".trash-"))
            if path == keep or not ours or not path.is_dir():
                continue
            trash = path.with_name(f".trash-{uuid.uuid4().hex[:8]}")
            try:
                os.replace(path, trash)  # out of sight first, so no half-deleted epoch is seen
            except OSError:
                continue
            shutil.rmtree(trash, ignore_errors=True)

    def restore(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        generator: torch.Generator,
        make_record: Callable[..., Any],
    ) -> LoopState | None:
        """Load the newest complete checkpoint into the given objects and the global RNG.

        Returns the loop state to continue from, or None when there is nothing to resume.
        Raises CheckpointError when the checkpoint is corrupt or from a different setup.
        """
        path = self.latest()
        if path is None:
            return None
        manifest = _read_manifest(path)
        if manifest.get("format") != FORMAT:
            raise CheckpointError(
                f"{path}: checkpoint format {manifest.get('format')!r}, expected {FORMAT}"
            )
        differences = fingerprint_differences(manifest.get("fingerprint", {}), self.fingerprint)
        if differences:
            raise CheckpointError(
                f"{path}: checkpoint is from a different run setup; "
                + "; ".join(differences)
                + f". Delete {self.directory} to start over."
            )
        missing = [name for name in FILES if not (path / name).is_file()]
        if missing:
            raise CheckpointError(f"{path}: checkpoint is missing {', '.join(missing)}")
        trainer = _read_trainer(path / TRAINER_FILE)
        load_into(model, path / MODEL_FILE)
        best_state = load_state(path / BEST_FILE)
        try:
            optimizer.load_state_dict(trainer["optimizer"])
            scheduler.load_state_dict(trainer["scheduler"])
            generator.set_state(trainer["rng"]["shuffle"])
            torch.set_rng_state(trainer["rng"]["torch"])
            _restore_cuda_rng(trainer["rng"]["cuda"])
            loop = LoopState(
                history=[make_record(**record) for record in trainer["loop"]["history"]],
                best_score=trainer["loop"]["best_score"],
                best_epoch=trainer["loop"]["best_epoch"],
                stale_epochs=trainer["loop"]["stale_epochs"],
                stopped=trainer["loop"]["stopped"],
                best_state=best_state,
                partial=trainer.get("partial"),
            )
            epochs = {manifest["epoch"], trainer["epoch"], len(loop.history) - 1}
        except (KeyError, TypeError, ValueError, RuntimeError) as err:
            raise CheckpointError(f"{path / TRAINER_FILE}: unusable trainer state ({err})") from err
        if len(epochs) != 1:
            raise CheckpointError(
                f"{path}: manifest, trainer state and history disagree on the epoch"
            )
        self._best_file = (path / BEST_FILE, loop.best_epoch)
        done = f"epoch {len(loop.history) - 1} done"
        if loop.partial is not None:
            done += f", {loop.partial['batches']} batches of epoch {loop.partial['epoch']}"
        logger.info("resuming from %s (%s)", path, done)
        return loop


def _save_weights(path: Path, state: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """orca.checkpoint.save_state without its defensive copy where none is needed: contiguous
    CPU tensors that share no storage are written straight from their memory (safetensors
    reads them through pointers), which spares a copy of the whole model per checkpoint."""
    tensors = {key: value.detach() for key, value in state.items()}
    storages = [value.untyped_storage().data_ptr() for value in tensors.values()]
    if len(set(storages)) < len(storages) or not all(
        value.device.type == "cpu" and value.is_contiguous() for value in tensors.values()
    ):
        save_state(path, state, metadata)  # shared, strided or device tensors: copies first
        return
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=file_metadata(metadata))


def _read_manifest(path: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{path / MANIFEST}: unreadable checkpoint manifest ({err})") from err
    if not isinstance(manifest, dict):
        raise CheckpointError(f"{path / MANIFEST}: checkpoint manifest is not a JSON object")
    return manifest


def _read_trainer(path: Path) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for truncated or foreign pickles
        raise CheckpointError(f"{path}: unreadable trainer state ({err})") from err


def _restore_cuda_rng(states: list[torch.Tensor]) -> None:
    if not states or not torch.cuda.is_available():
        return
    if len(states) != torch.cuda.device_count():
        logger.warning(
            "checkpoint has CUDA RNG states for %d devices, this machine has %d; "
            "restoring the first ones, dropout may differ from an uninterrupted run",
            len(states),
            torch.cuda.device_count(),
        )
    for device, state in enumerate(states[: torch.cuda.device_count()]):
        torch.cuda.set_rng_state(state, device)


def _fsync_directory(path: Path) -> None:
    """Make a rename inside `path` durable (POSIX); a no-op where directories can't be opened."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
