"""The MLflow pyfunc loader of an orca model package (orca/serving/package.py).

MLflow's python_function flavour calls `_load_pyfunc(data_path)` and then
`.predict(model_input)`. The registered model carries its own copy of the orca package
(its code path), from which MLflow imports this module, so it loads where orca is not
installed: torch, numpy, safetensors and the body's library (transformers or timm) are all
it needs. Nothing here imports MLflow.

    predict(x)   x: float32 (N, *input_shape), the task's raw inputs (no scaling: the
                 package holds the training split's standardisation)
                 -> float32 (N, *output_shape), what the evaluate stage scores
"""

from __future__ import annotations

from typing import Any

import numpy as np

from orca.serving.package import PackageManifest, load_package, predict


class ServedModel:
    """A loaded package; `predict` checks its input against the task's input shape."""

    def __init__(self, manifest: PackageManifest, model: Any) -> None:
        self.manifest = manifest
        self.model = model

    def predict(self, model_input: Any, params: dict[str, Any] | None = None) -> np.ndarray:
        return predict(self.model, self.check_input(model_input), self.manifest.batch_size)

    def check_input(self, model_input: Any) -> np.ndarray:
        """`model_input` as a float32 array (N, *input_shape), or ValueError saying what
        was given and what is expected."""
        if isinstance(model_input, dict) and len(model_input) == 1:  # one named tensor
            model_input = next(iter(model_input.values()))
        if hasattr(model_input, "to_numpy"):  # a pandas DataFrame, one example per row
            model_input = model_input.to_numpy()
        try:
            x = np.asarray(model_input, dtype=np.float32)
        except (TypeError, ValueError) as err:
            raise ValueError(f"inputs are not a numeric array ({err})") from err
        shape = self.manifest.input_shape
        expected = f"(N, {', '.join(map(str, shape))})"
        if x.ndim != len(shape) + 1 or x.shape[1:] != shape:
            raise ValueError(
                f"inputs of shape {x.shape}; task {self.manifest.task.name!r} expects {expected}"
            )
        if not np.isfinite(x).all():
            raise ValueError("inputs contain NaN or inf values")
        return x


def _load_pyfunc(data_path: str) -> ServedModel:
    return ServedModel(*load_package(data_path))
