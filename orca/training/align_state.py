"""The checkpoint of a stopped embedder training (stage 2), and resuming from it.

Align is written only when a run is stopped (orca.stopping), at the end of an epoch:
    <directory>/align/
        embedder.safetensors   the embedder's state_dict
        trainer.pt             optimizer and scheduler state, the global torch RNG, the
                               class-sampling generator, and the distances so far
        run.json               the run fingerprint: what must match to continue
        manifest.json          orca.manifest's fingerprints of the files above
The directory appears whole (orca.atomic.atomic_directory). A re-run with the same setup
(config, seed, data sizes, embedder parameters) continues after the saved epoch, and ends
where an uninterrupted run would have; one with another setup raises CheckpointError.
trainer.pt holds only tensors and plain values, read with torch.load(weights_only=True).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from orca.atomic import atomic_directory, atomic_path
from orca.checkpoint import CheckpointError, load_into, save_state
from orca.manifest import manifest_problem
from orca.training.trainer_state import fingerprint_differences

ALIGN_DIR = "align"
RUN_FILE = "run.json"


class AlignCheckpoint:
    """Save and restore the embedder training's state in `directory`/align."""

    def __init__(self, directory: str | Path, fingerprint: dict[str, Any]) -> None:
        self.path = Path(directory) / ALIGN_DIR
        self.fingerprint = json.loads(json.dumps(fingerprint))

    def save(self, embedder, optimizer, scheduler, generator, distances: list[float]) -> Path:
        trainer = {
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": {"torch": torch.get_rng_state(), "classes": generator.get_state()},
            "distances": list(distances),
        }
        with atomic_directory(self.path, manifest=True) as tmp:
            save_state(tmp / "embedder.safetensors", embedder.state_dict(), {})
            with atomic_path(tmp / "trainer.pt") as path:
                torch.save(trainer, path)
            (tmp / RUN_FILE).write_text(json.dumps(self.fingerprint))
        return self.path

    def restore(self, embedder, optimizer, scheduler, generator) -> list[float] | None:
        """Load the saved state into the given objects and the global RNG; return the
        distances of the epochs done, or None when there is no checkpoint."""
        if not self.path.is_dir():
            return None
        problem = manifest_problem(self.path)
        if problem:
            raise CheckpointError(f"{self.path}: damaged align checkpoint ({problem})")
        saved = json.loads((self.path / RUN_FILE).read_text())
        differences = fingerprint_differences(saved, self.fingerprint)
        if differences:
            raise CheckpointError(
                f"{self.path}: align checkpoint is from a different run setup; "
                + "; ".join(differences)
                + f". Delete {self.path} to start over."
            )
        load_into(embedder, self.path / "embedder.safetensors")
        try:
            trainer = torch.load(self.path / "trainer.pt", map_location="cpu", weights_only=True)
            optimizer.load_state_dict(trainer["optimizer"])
            scheduler.load_state_dict(trainer["scheduler"])
            torch.set_rng_state(trainer["rng"]["torch"])
            generator.set_state(trainer["rng"]["classes"])
            return [float(value) for value in trainer["distances"]]
        except (KeyError, TypeError, ValueError, RuntimeError) as err:
            raise CheckpointError(f"{self.path / 'trainer.pt'}: unusable state ({err})") from err
