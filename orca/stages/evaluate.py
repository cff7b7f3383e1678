"""Stage: the test metric of the selected model. The only stage that reads the test split.

The model runs on the run's device (orca.devices) in fp32 (no autocast, no TF32:
orca.training.precision), so the metric agrees with a CPU evaluation of the same weights
to float rounding; the result records the device.
"""

from __future__ import annotations

from typing import Any

import torch

from orca.checkpoint import load_into
from orca.data.arrow_io import read_split
from orca.data.tasks import get_task
from orca.devices import device_of, torch_device
from orca.metrics import METRICS
from orca.model import OrcaModel, create_model
from orca.training.finetune import evaluate as evaluate_metric


def load_trained_model(
    task_name: str, backbone: str, model_ref: dict[str, Any], seed: int, device: str = "cpu"
) -> OrcaModel:
    """The refined model, in eval mode, on `device` (a name in orca.devices.DEVICES)."""
    # Every weight comes from the checkpoint, so the body is built without loading its own.
    model = create_model(get_task(task_name), backbone, seed=seed, pretrained=False)
    load_into(model, model_ref["path"])
    return model.to(torch_device(device)).eval()


def evaluate(
    task_name: str,
    backbone: str,
    dataset: dict[str, Any],
    model_ref: dict[str, Any],
    seed: int,
    device: str = "auto",
) -> dict[str, Any]:
    spec = get_task(task_name)
    model = load_trained_model(task_name, backbone, model_ref, seed, device)
    test = read_split(dataset["splits"]["test"]["path"])
    metric = METRICS.get(spec.metric)
    value = evaluate_metric(
        model,
        torch.from_numpy(test.x),
        torch.from_numpy(test.y),
        metric,
        context=test.context,  # the test rows' context, for a metric that needs it
    )
    return {
        "metric": spec.metric,
        "value": value,
        "lower_is_better": metric.lower_is_better,
        "test_rows": len(test.y),
        "device": device_of(model),
    }
