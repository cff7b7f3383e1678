"""UCR/UEA time-series classification tasks, from the copies bundled in aeon."""

from __future__ import annotations

import numpy as np

from orca.config import AlignConfig, RefineConfig
from orca.data.tasks import RawTask, TaskSpec, register_task


def load_ucr(name: str) -> RawTask:
    """Load a UCR/UEA set bundled with aeon as (N, C, L) float32 with int64 class ids.

    Class labels are mapped to 0..K-1 in sorted order of the original label strings.
    """
    try:
        import aeon
        from aeon.datasets import load_classification
    except ImportError as err:
        raise RuntimeError("UCR tasks need the 'aeon' package: pip install aeon") from err
    x_train, y_train = load_classification(name, split="train")
    x_test, y_test = load_classification(name, split="test")
    classes = sorted(set(y_train) | set(y_test), key=lambda c: (len(str(c)), str(c)))
    index = {label: i for i, label in enumerate(classes)}
    return RawTask(
        x_train=np.asarray(x_train, dtype=np.float32),  # (N, C, L)
        y_train=np.array([index[v] for v in y_train], dtype=np.int64),
        x_test=np.asarray(x_test, dtype=np.float32),
        y_test=np.array([index[v] for v in y_test], dtype=np.int64),
        source=f"aeon.datasets.load_classification({name!r})",
        version=f"aeon=={aeon.__version__}",
        label_names=tuple(str(c) for c in classes),
    )


register_task(
    TaskSpec(
        name="gunpoint",
        description="UCR GunPoint: hand-motion time series (1 channel, length 150), 2 classes",
        modality="1d",
        input_shape=(1, 150),
        output="classification",
        num_outputs=2,
        loss="cross_entropy",
        metric="error_rate",
        loader=lambda: load_ucr("GunPoint"),
        max_seq_len=64,
        # The paper's rule: embedder learning rate = 10x the fine-tuning rate.
        align=AlignConfig(epochs=20, lr=1e-3, samples_per_class=64, lr_milestones=(10, 15)),
        refine=RefineConfig(epochs=30, batch_size=8, lr=1e-4, warmup_fraction=0.1),
    )
)
