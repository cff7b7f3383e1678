"""Model weights on disk as safetensors: no pickle, atomic writes, checked loads."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from orca.atomic import atomic_path


class CheckpointError(ValueError):
    """A checkpoint is unreadable or does not fit the model it is loaded into."""


METADATA_KEY = "orca"


def file_metadata(metadata: dict[str, str] | None) -> dict[str, str]:
    """The safetensors header metadata for `metadata`: one key holding sorted JSON.

    safetensors writes several metadata keys in an order that changes from one process to
    the next, so the same weights would give files with different bytes, and so different
    fingerprints and cache keys downstream. One key has one order."""
    return {METADATA_KEY: json.dumps(metadata or {}, sort_keys=True)}


def save_state(
    path: str | Path, state: dict[str, torch.Tensor], metadata: dict[str, str] | None = None
) -> None:
    """Write `state` atomically; the same tensors and metadata always give the same bytes."""
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=file_metadata(metadata))


def load_state(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file does not exist")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{path}: not a readable safetensors checkpoint ({err})") from err


def load_into(module: torch.nn.Module, path: str | Path) -> None:
    """Load a checkpoint into `module`, raising if key sets or shapes differ."""
    state = load_state(path)
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in state.items()}
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    mismatched = sorted(
        f"{k} (checkpoint {found[k]}, model {expected[k]})"
        for k in set(expected) & set(found)
        if expected[k] != found[k]
    )
    if missing or unexpected or mismatched:
        parts = [
            f"{label}: {', '.join(keys[:10])}{' ...' if len(keys) > 10 else ''}"
            for label, keys in (
                ("missing", missing),
                ("unexpected", unexpected),
                ("shape mismatch", mismatched),
            )
            if keys
        ]
        raise CheckpointError(f"{path}: checkpoint does not fit the model; " + "; ".join(parts))
    module.load_state_dict(state)


def checkpoints_for(out_dir: str | Path) -> Path:
    """Where a training stage (align, refine) keeps its checkpoints for `out_dir`: a sibling
    that outlives a failed or stopped attempt (`out_dir` itself appears only when the stage
    is done)."""
    out_dir = Path(out_dir)
    return out_dir.with_name(out_dir.name + ".checkpoints")
