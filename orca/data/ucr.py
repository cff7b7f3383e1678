"""UCR/UEA time-series tasks, from the copies bundled in aeon.

Registered here (all offline, from the aeon wheel):
    gunpoint      1 channel x 150, 2 classes, 50/150
    arrowhead     1 channel x 250 (the published 251, last sample cropped), 3 classes, 36/175
    acsf1         1 channel x 1460, 10 classes, 100/100
    basicmotions  6 channels x 100, 4 classes, 40/40
    covid3month   1 channel x 84 -> one scalar (regression), 140/61

The demo configs (align/refine) are sized so that one run of a task costs a few seconds
on 2 CPU cores with the 6-layer, D=384 MiniLM body; see each task's comment.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from orca.config.stages import AlignConfig, RefineConfig
from orca.data.tasks import RawTask, TaskSpec, register_task


def _aeon():
    try:
        import aeon
        import aeon.datasets
    except ImportError as err:
        raise RuntimeError("UCR tasks need the 'aeon' package: pip install aeon") from err
    return aeon


def _series(name: str, split: str, x) -> np.ndarray:
    """aeon's X as a finite (N, C, L) float32 array, or ValueError naming the problem.

    Variable-length sets come back from aeon as a list of (C, L_i) arrays, and some sets
    pad unequal lengths with NaN; neither fits a fixed-shape embedder, so both are refused
    here instead of reaching the model as garbage.
    """
    if not isinstance(x, np.ndarray) or x.ndim != 3:
        raise ValueError(
            f"{name} ({split}): expected an equal-length (N, C, L) array from aeon, got "
            f"{type(x).__name__}; variable-length sets are not supported"
        )
    x = np.asarray(x, dtype=np.float32)
    missing = int(np.count_nonzero(~np.isfinite(x)))
    if missing:
        raise ValueError(
            f"{name} ({split}): {missing} of {x.size} values are NaN or inf (missing values "
            "or NaN padding of unequal lengths); impute or crop before use"
        )
    return x


def load_ucr(name: str) -> RawTask:
    """Load a UCR/UEA set bundled with aeon as (N, C, L) float32 with int64 class ids.

    Class labels are mapped to 0..K-1 in sorted order of the original label strings
    (shorter strings first, so "2" < "10"). Sets with NaNs or unequal lengths raise
    ValueError.
    """
    aeon = _aeon()
    from aeon.datasets import load_classification

    x_train, y_train = load_classification(name, split="train")
    x_test, y_test = load_classification(name, split="test")
    classes = sorted(set(y_train) | set(y_test), key=lambda c: (len(str(c)), str(c)))
    index = {label: i for i, label in enumerate(classes)}
    return RawTask(
        x_train=_series(name, "train", x_train),  # (N, C, L)
        y_train=np.array([index[v] for v in y_train], dtype=np.int64),
        x_test=_series(name, "test", x_test),
        y_test=np.array([index[v] for v in y_test], dtype=np.int64),
        source=f"aeon.datasets.load_classification({name!r})",
        version=f"aeon=={aeon.__version__}",
        label_names=tuple(str(c) for c in classes),
    )


def crop_series(raw: RawTask, length: int) -> RawTask:
    """Keep the first `length` time steps of every series (train, test and validation).

    For published lengths with no usable divisor (ArrowHead's 251 is prime, so the 1D
    embedder's only stride under a short token limit would be the whole series).
    """
    if not 1 <= length <= raw.x_train.shape[-1]:
        raise ValueError(f"cannot crop series of length {raw.x_train.shape[-1]} to {length}")
    cropped = {
        key: value[..., :length].copy()
        for key in ("x_train", "x_test", "x_val")
        if (value := getattr(raw, key)) is not None
    }
    note = f"; first {length} of {raw.x_train.shape[-1]} time steps"
    return replace(raw, **cropped, source=raw.source + note)


def load_ucr_regression(name: str, *, log_inputs: bool = False) -> RawTask:
    """Load a time-series extrinsic regression set bundled with aeon.

    Returns x (N, C, L) float32 and y (N, 1) float32. Inputs: optionally log1p (for
    non-negative counts spanning orders of magnitude), then standardised with one mean and
    standard deviation over all training values. Targets: standardised with the training
    mean and standard deviation. Both sets of statistics come from the published training
    split only (which ingest later splits into train and validation) and are recorded in
    `source`, so predictions convert back to raw units as y * std + mean.
    """
    aeon = _aeon()
    from aeon.datasets import load_regression

    x_train, y_train = load_regression(name, split="train")
    x_test, y_test = load_regression(name, split="test")
    x_train, x_test = _series(name, "train", x_train), _series(name, "test", x_test)
    y_train = np.asarray(y_train, dtype=np.float64).reshape(-1, 1)
    y_test = np.asarray(y_test, dtype=np.float64).reshape(-1, 1)
    if not (np.isfinite(y_train).all() and np.isfinite(y_test).all()):
        raise ValueError(f"{name}: regression targets contain NaN or inf")
    steps = []
    if log_inputs:
        if min(x_train.min(), x_test.min()) < 0:
            raise ValueError(f"{name}: log1p inputs need non-negative values")
        x_train, x_test = np.log1p(x_train), np.log1p(x_test)
        steps.append("inputs log1p")
    x_mean, x_std = float(x_train.mean()), float(x_train.std()) or 1.0
    y_mean, y_std = float(y_train.mean()), float(y_train.std()) or 1.0
    steps.append(f"inputs standardised (train mean {x_mean:.6g}, std {x_std:.6g})")
    steps.append(f"targets standardised (train mean {y_mean:.6g}, std {y_std:.6g})")
    return RawTask(
        x_train=((x_train - x_mean) / x_std).astype(np.float32),
        y_train=((y_train - y_mean) / y_std).astype(np.float32),
        x_test=((x_test - x_mean) / x_std).astype(np.float32),
        y_test=((y_test - y_mean) / y_std).astype(np.float32),
        source=f"aeon.datasets.load_regression({name!r}); " + "; ".join(steps),
        version=f"aeon=={aeon.__version__}",
    )


# The embedded demo tasks below share small configs. Align: the paper's schedule (60
# per-class OTDD steps, StepLR x0.2 at epochs 20 and 40, lr 10x the recipe's body lr) on at
# most 16 examples per class against 500 proxy examples; an epoch costs about 70 ms here.
DEMO_ALIGN = AlignConfig(
    epochs=60, lr=5e-4, samples_per_class=16, lr_milestones=(20, 40), max_source_samples=500
)
# Refine: the default recipe (orca/training/recipe.py) like any task file, with a smaller
# time budget than its 10-minute default, so that `orca demo` (8 tasks, several methods
# and seeds, two runs at a time) stays within about 15 minutes on 2 cores.
DEMO_REFINE = RefineConfig(budget_s=30.0)

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
        max_seq_len=16,  # stride 10 -> 15 tokens
        align=DEMO_ALIGN,
        refine=DEMO_REFINE,
    )
)


register_task(
    TaskSpec(
        name="arrowhead",
        description=(
            "UCR ArrowHead: arrowhead outlines as 1-D series (1 channel; the published length "
            "251 is prime, so the last time step is cropped to 250), 3 classes, 36/175"
        ),
        modality="1d",
        input_shape=(1, 250),
        output="classification",
        num_outputs=3,
        loss="cross_entropy",
        metric="error_rate",
        loader=lambda: crop_series(load_ucr("ArrowHead"), 250),
        max_seq_len=10,  # stride 25 -> 10 tokens
        align=DEMO_ALIGN,
        refine=DEMO_REFINE,
    )
)

register_task(
    TaskSpec(
        name="acsf1",
        description=(
            "UCR ACSF1: power consumption of home appliances (1 channel, length 1460), "
            "10 classes, 100/100"
        ),
        modality="1d",
        input_shape=(1, 1460),
        output="classification",
        num_outputs=10,
        loss="cross_entropy",
        metric="error_rate",
        loader=lambda: load_ucr("ACSF1"),
        max_seq_len=16,  # 1460 = 4 * 5 * 73: stride 146 -> 10 tokens
        align=DEMO_ALIGN,
        refine=DEMO_REFINE,
    )
)

register_task(
    TaskSpec(
        name="basicmotions",
        description=(
            "UEA BasicMotions: smartwatch accelerometer and gyroscope (6 channels, length "
            "100), 4 activities, 40/40"
        ),
        modality="1d",
        input_shape=(6, 100),
        output="classification",
        num_outputs=4,
        loss="cross_entropy",
        metric="error_rate",
        loader=lambda: load_ucr("BasicMotions"),
        max_seq_len=20,  # stride 5 -> 20 tokens
        align=DEMO_ALIGN,
        refine=DEMO_REFINE,
    )
)

register_task(
    TaskSpec(
        name="covid3month",
        description=(
            "TSER Covid3Month: a country's daily confirmed COVID-19 cases over 3 months (1 "
            "channel, length 84) -> its death rate the following month (regression), "
            "140/61. Inputs log1p then standardised, targets standardised, both with "
            "training statistics; 1 - R^2 is the same in standardised and raw units"
        ),
        modality="1d",
        input_shape=(1, 84),
        output="regression",
        num_outputs=1,
        loss="mse",
        metric="one_minus_r2",
        loader=lambda: load_ucr_regression("Covid3Month", log_inputs=True),
        max_seq_len=7,  # stride 12 -> 7 tokens
        align=DEMO_ALIGN,
        refine=DEMO_REFINE,
    )
)
