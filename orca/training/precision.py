"""Numeric precision on the device: bf16 autocast for training steps only, fp32 for every
output that is scored.

    training_autocast(device)  bf16 autocast on CUDA, nothing on the CPU: the fine-tuning
                               steps, and the throughput measurement that plans them (so the
                               plan is made at the speed the steps will run)
    full_precision(device)     no autocast and, on CUDA, no TF32 (cuDNN convolutions use
                               TF32 by default, matmuls when a user allows it): evaluation on
                               test and validation inside training, which selects the model.
                               Outputs are then fp32 throughout, within float rounding of the
                               CPU's, so a dense regression metric is not read off bf16
                               outputs (about 3 significant digits).

The authors' code trains in fp32 and evaluates in fp32; orca keeps bf16 for the training
steps, where it is the speed-up, and nowhere else.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


def training_autocast(device: torch.device):
    """The autocast context of a training step on `device`."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


@contextmanager
def full_precision(device: torch.device) -> Iterator[None]:
    """fp32 arithmetic on `device` inside the block; TF32 settings restored after."""
    if device.type != "cuda":
        with torch.autocast("cpu", enabled=False):
            yield
        return
    saved = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        with torch.autocast("cuda", enabled=False):
            yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
