"""A model package: one directory holding everything that turns a task's raw inputs into
the outputs orca's evaluate stage scores, for a loader that has no orca installation,
task registry, state directory or hub.

    model.json            PackageManifest: format, the task's shapes and output kind, the
                          body's description, the batch size of the predictions
    weights.safetensors   every weight and buffer of the OrcaModel, the input and target
                          standardisation included (orca/model/scalers.py)
    body/                 what the body's kind needs to rebuild it (a text body: config.json)

The outputs are exactly what orca.stages.evaluate hands to the metric: the model's forward
pass on the raw float32 inputs, in eval mode, batched as orca.training.finetune.evaluate
batches (classification: logits (N, C); regression and dense tasks: values in the targets'
own units).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from orca.atomic import atomic_directory
from orca.checkpoint import load_into, save_state
from orca.serving.bodies import BODY_PACKINGS

FORMAT = "orca-model-package/1"
MANIFEST = "model.json"
WEIGHTS = "weights.safetensors"
BODY_DIR = "body"
BATCH_SIZE = 64  # orca.training.finetune.evaluate's default, which the evaluate stage uses


class PackageError(ValueError):
    """A model package is missing, unreadable, or not one this loader knows."""


@dataclass(frozen=True)
class ServedTask:
    """What building the model and reading its outputs needs to know about the task: the
    fields orca.model.create_model reads from a TaskSpec, and the task's metric."""

    name: str
    modality: str
    input_shape: tuple[int, ...]
    output: str
    num_outputs: int
    max_seq_len: int
    metric: str
    lower_is_better: bool

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_shape", _shape("task.input_shape", self.input_shape))

    @classmethod
    def from_spec(cls, spec: Any) -> ServedTask:
        """From an orca.data.tasks.TaskSpec."""
        return cls(
            name=spec.name,
            modality=spec.modality,
            input_shape=tuple(spec.input_shape),
            output=spec.output,
            num_outputs=int(spec.num_outputs),
            max_seq_len=int(spec.max_seq_len),
            metric=spec.metric,
            lower_is_better=bool(spec.lower_is_better),
        )


@dataclass(frozen=True)
class PackageManifest:
    """model.json: checked when built and when read."""

    task: ServedTask
    backbone: str  # as the run named it; informative only, the build uses `body`
    body_kind: str
    body: dict[str, Any]
    output_shape: tuple[int, ...]  # one example's outputs
    batch_size: int = BATCH_SIZE
    format: str = FORMAT

    def __post_init__(self) -> None:
        if self.format != FORMAT:
            raise PackageError(f"format {self.format!r} is not one this loader reads ({FORMAT})")
        BODY_PACKINGS.check(self.body_kind, field="body_kind")
        object.__setattr__(self, "output_shape", _shape("output_shape", self.output_shape))
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise PackageError(f"batch_size must be a positive integer, got {self.batch_size!r}")

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.task.input_shape

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PackageManifest:
        try:
            return cls(**{**data, "task": ServedTask(**data["task"])})
        except (KeyError, TypeError) as err:
            raise PackageError(f"not a valid {MANIFEST} ({err})") from err


def _shape(name: str, value: Any) -> tuple[int, ...]:
    shape = tuple(value) if isinstance(value, list | tuple) else None
    if not shape or not all(isinstance(n, int) and n > 0 for n in shape):
        raise PackageError(f"{name} must be a non-empty list of positive integers, got {value!r}")
    return shape


def predict(model: torch.nn.Module, x: np.ndarray, batch_size: int = BATCH_SIZE) -> np.ndarray:
    """The model's outputs for raw inputs `x` (N, *input_shape), as the evaluate stage
    computes them: float32, on the model's device, batched."""
    from orca.training.finetune import predict as batched_predict

    with torch.no_grad():
        outputs = batched_predict(model, torch.from_numpy(np.ascontiguousarray(x)), batch_size)
    return outputs.numpy()


def write_package(
    directory: str | Path,
    model: torch.nn.Module,
    task: ServedTask,
    backbone: str,
    example: np.ndarray,
) -> PackageManifest:
    """Write the package of a trained OrcaModel to `directory` (atomically). `example`: a
    few rows of raw inputs, run once to record the outputs' shape."""
    example = np.asarray(example, dtype=np.float32)
    if example.ndim < 2 or example.shape[1:] != task.input_shape:
        raise ValueError(
            f"example inputs of shape {example.shape}; expected (N, {_dims(task.input_shape)})"
        )
    model = model.eval()
    outputs = predict(model, example)
    kind = model.body.kind
    with atomic_directory(directory) as tmp:
        (tmp / BODY_DIR).mkdir()
        description = BODY_PACKINGS.get(kind).save(model.body, backbone, tmp / BODY_DIR)
        manifest = PackageManifest(
            task=task,
            backbone=backbone,
            body_kind=kind,
            body=description,
            output_shape=tuple(int(n) for n in outputs.shape[1:]),
        )
        save_state(tmp / WEIGHTS, model.state_dict())
        (tmp / MANIFEST).write_text(json.dumps(manifest.to_dict(), indent=2, sort_keys=True))
    return manifest


def read_manifest(directory: str | Path) -> PackageManifest:
    path = Path(directory) / MANIFEST
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise PackageError(f"{path}: not a readable model manifest ({err})") from err
    if not isinstance(data, dict):
        raise PackageError(f"{path}: expected a JSON object")
    try:
        return PackageManifest.from_dict(data)
    except ValueError as err:
        raise PackageError(f"{path}: {err}") from err


def load_package(directory: str | Path) -> tuple[PackageManifest, torch.nn.Module]:
    """The manifest and the model, built from the package alone, in eval mode on the CPU."""
    from orca.model import create_model

    directory = Path(directory)
    manifest = read_manifest(directory)
    body = BODY_PACKINGS.get(manifest.body_kind).build(manifest.body, directory / BODY_DIR)
    model = create_model(manifest.task, manifest.backbone, pretrained=False, body=body)
    load_into(model, directory / WEIGHTS)
    return manifest, model.eval()


def _dims(shape: tuple[int, ...]) -> str:
    return ", ".join(str(n) for n in shape)
