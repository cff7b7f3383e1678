"""The `paper` preset: the authors' settings (sjunhongshen/ORCA, src/configs/*.yaml and
src/task_configs.py, src/embedder.py, src/main.py), mapped onto orca's configs.

AUTHORS_CONFIGS holds, per orca task, the knobs of the authors' config file it follows,
transcribed by hand under their own names (`AuthorsConfig`). `authors_sections` maps one
onto orca's fields; METHOD_VALUES are the settings that are the same in every config of
theirs (their method rather than a task's numbers), and apply to every task, including
tasks without a config of theirs (a task file of your own). docs/paper-preset.md lists
every difference from orca's defaults and why.

Which config each task follows:
  - NAS-Bench-360 and PDEBench tasks: the config of the same dataset;
  - orca's own solver tasks `darcy` and `burgers` (orca/data/pde_tasks.py) stand in for
    NAS-Bench-360 Darcy (darcy.yaml: FNO's Darcy flow, the same problem) and PDEBench
    Burgers (PDEBG.yaml);
  - OpenML: credit-g is OPENML31.yaml and diabetes OPENML37.yaml; kc1 (1067) has no config
    of theirs, so it follows OPENML1068.yaml, pc1, the NASA defect dataset with the same
    21 code metrics.

The sequence length (their target_seq_len) is recorded but not applied: in orca it is the
task's `max_seq_len` (TaskSpec), not a run's setting; `sequence_length_mismatches` names
the tasks whose registered length differs from theirs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from orca.presets.base import PRESETS, Preset, Sections, merged

BETAS = (0.9, 0.98)  # every config of theirs
OPTIMIZER_NAMES = {"SGD": "sgd", "Adam": "adam", "AdamW": "adamw"}  # theirs -> OPTIMIZERS
BODY_NAMES = {"roberta": "roberta-base", "base": "swin-base"}  # their `weight` -> backbone
DEFAULT_SEQ_LEN = 512  # task_configs.get_config: target_seq_len when a config has none
# Their stage-2 StepLR (no_warmup_scheduler, the same in every config): sched [20, 40, 60],
# base 0.2, as LambdaLR(lambda epoch: 0.2 ** #{s in sched: epoch > s}), stepped once per
# epoch after it: epoch e trains at 0.2 ** #{s < e}. MultiStepLR's epoch e trains at
# gamma ** #{m <= e}, so their schedule is milestones (21, 41, 61).
EMBEDDER_MILESTONES = (21, 41, 61)
EMBEDDER_GAMMA = 0.2

# Their `objective`, as orca's stage-2 fields. "otdd-exact" is their OTDD with
# inner_ot_method "exact": label distances by debiased Sinkhorn (geomloss, eps 0.1) on
# ||x - y||^2, the outer problem a debiased Sinkhorn (eps 0.1) on (||x - y||^2 + W) / 2.
OBJECTIVES: dict[str, dict[str, Any]] = {
    "otdd-exact": {"metric": "otdd", "otdd_inner": "sinkhorn", "otdd_epsilon": 0.1},
    "otdd-gaussian": {"metric": "otdd", "otdd_inner": "gaussian", "otdd_epsilon": 0.1},
}

# Settings that are the same in every config of theirs, for every task.
METHOD_VALUES: Sections = {
    "align": {
        "procedure": "per_class",
        "otdd_cost": "half",  # the OTDD library's cost convention
        "embedder_init": "paper",
        "betas": BETAS,
        **OBJECTIVES["otdd-exact"],
    },
    "refine": {
        "betas": BETAS,
        "task_lr_scale": 1.0,  # one lr for the whole model (get_params_to_update)
        "probe_steps": 0,  # predictor_epochs: 0 in every config
        "accumulated_loss": "sum",  # train_one_epoch does not divide by accum
        "mixup": 0.0,
    },
}


@dataclass(frozen=True)
class AuthorsConfig:
    """The knobs of one of their src/configs/*.yaml that orca maps, named as theirs."""

    source: str  # the file
    weight: str  # the body: "roberta" (RoBERTa-base) or "base" (Swin-base)
    epochs: int
    embedder_epochs: int
    maxsamples: int  # target examples per class per stage-2 epoch (see samples_per_class)
    batch_size: int
    accum: int
    clip: float  # <= 0: no clipping
    drop_out: float
    optimizer: str  # "SGD" | "Adam" | "AdamW"
    lr: float
    weight_decay: float
    momentum: float
    warmup_epochs: int  # scheduler WarmupLR
    decay_epochs: int
    target_seq_len: int = DEFAULT_SEQ_LEN
    objective: str = "otdd-exact"

    def __post_init__(self) -> None:
        for field, value, valid in (
            ("weight", self.weight, BODY_NAMES),
            ("optimizer", self.optimizer, OPTIMIZER_NAMES),
            ("objective", self.objective, OBJECTIVES),
        ):
            if value not in valid:
                raise ValueError(
                    f"{self.source}: {field}={value!r}; expected one of {', '.join(valid)}"
                )

    @property
    def samples_per_class(self) -> int:
        """Target examples a class contributes per stage-2 epoch: their loop appends
        batches of batch_size until it holds MORE than maxsamples (or the class ends)."""
        return (self.maxsamples // self.batch_size + 1) * self.batch_size

    @property
    def embedder_lr(self) -> float:
        """get_optimizer_scheduler(module='embedder'): 10x the lr when it is <= 1e-3."""
        return self.lr * 10 if self.lr <= 1e-3 else self.lr


def authors_sections(config: AuthorsConfig) -> Sections:
    """orca's align and refine fields for one of their configs (the task-specific part)."""
    optimizer = OPTIMIZER_NAMES[config.optimizer]
    return {
        "align": {
            **OBJECTIVES[config.objective],
            "epochs": config.embedder_epochs,
            "lr": config.embedder_lr,
            "optimizer": optimizer,
            "weight_decay": config.weight_decay,
            "momentum": config.momentum,
            "lr_milestones": EMBEDDER_MILESTONES,
            "lr_gamma": EMBEDDER_GAMMA,
            "samples_per_class": config.samples_per_class,
        },
        "refine": {
            "epochs": config.epochs,
            "batch_size": config.batch_size,
            "lr": config.lr,
            "optimizer": optimizer,
            "weight_decay": config.weight_decay,
            "momentum": config.momentum,
            "schedule": "linear",
            "warmup_fraction": min(1.0, config.warmup_epochs / config.epochs),
            "decay_epochs": config.decay_epochs,
            "accumulation_steps": config.accum,
            "clip_norm": config.clip if config.clip > 0 else None,
            "dropout": config.drop_out,
            "patience": None,  # they train every epoch and keep the best-validated one
        },
    }


def _config(source: str, weight: str, *numbers: Any, **named: Any) -> AuthorsConfig:
    """AuthorsConfig(source, weight, epochs, embedder_epochs, maxsamples, batch_size, accum,
    clip, drop_out, optimizer, lr, weight_decay, momentum, warmup_epochs, decay_epochs)."""
    return AuthorsConfig(source, weight, *numbers, **named)


_DARCY = _config(
    "darcy.yaml", "base", 100, 60, 128, 4, 1, -1, 0.0, "AdamW", 1e-3, 5e-3, 0.9, 5, 100
)
_BURGERS = _config(
    "PDEBG.yaml", "roberta", 200, 60, 128, 4, 1, 1, 0, "Adam", 1e-5, 1e-5, 0.99, 5, 200,
    target_seq_len=128,
)  # fmt: skip

# orca task -> the config of theirs it follows. The columns: epochs, embedder_epochs,
# maxsamples, batch_size, accum, clip, drop_out, optimizer, lr, weight_decay, momentum,
# warmup_epochs, decay_epochs.
AUTHORS_CONFIGS: dict[str, AuthorsConfig] = {
    "cifar100": _config(
        "cifar100.yaml", "base", 60, 60, 128, 32, 32, -1, 0.0, "SGD", 1e-4, 1e-3, 0.9, 5, 200
    ),
    "spherical": _config(
        "spherical.yaml", "base", 60, 60, 128, 32, 4, -1, 0.0, "AdamW", 1e-4, 0.1, 0.999, 5, 60
    ),
    "ninapro": _config(
        "ninapro.yaml", "base", 60, 100, 128, 32, 1, 1, 0, "Adam", 1e-4, 1e-5, 0.999, 5, 60
    ),
    "fsd50k": _config(
        "fsd.yaml", "base", 100, 60, 128, 32, 1, -1, 0.0, "Adam", 1e-4, 5e-5, 0.9, 5, 100
    ),
    "nb360-darcy": _DARCY,
    "psicov": _config(
        "psicov.yaml", "base", 10, 60, 64, 1, 32, -1, 0.0, "Adam", 5e-6, 1e-5, 0.99, 5, 100
    ),
    "cosmic": _config(
        "cosmic.yaml", "base", 60, 60, 128, 4, 1, -1, 0, "AdamW", 1e-3, 0.0, 0.99, 5, 60
    ),
    "ecg": _config(
        "ecg.yaml", "roberta", 15, 60, 128, 4, 16, -1, 0, "SGD", 1e-6, 0.1, 0.99, 5, 200,
        target_seq_len=64,
    ),
    "satellite": _config(
        "satellite.yaml", "roberta", 60, 60, 128, 16, 4, -1, 0, "AdamW", 3e-5, 3e-6, 0.9, 5, 60
    ),
    "deepsea": _config(
        "deepsea.yaml", "roberta", 13, 60, 64, 16, 1, 1, 0, "Adam", 1e-5, 0.0, 0.99, 10, 25,
        target_seq_len=512,
    ),
    "pdebench-burgers": _BURGERS,
    "pdebench-advection": _config(
        "PDEADV.yaml", "roberta", 200, 60, 128, 4, 1, 1, 0, "Adam", 1e-4, 1e-5, 0.99, 5, 200,
        target_seq_len=512,
    ),
    "pdebench-darcy": _config(
        "PDEDC.yaml", "base", 100, 60, 128, 4, 1, -1, 0, "AdamW", 1e-4, 1e-5, 0.99, 5, 200,
        target_seq_len=64,
    ),
    "darcy": _DARCY,
    "burgers": _BURGERS,
    "openml-credit-g": _config(
        "OPENML31.yaml", "roberta", 20, 20, 128, 64, 1, 1, 0.05, "Adam", 1e-5, 1e-3, 0.999, 5, 20,
        target_seq_len=8,
    ),
    "openml-diabetes": _config(
        "OPENML37.yaml", "roberta", 20, 20, 128, 64, 1, 1, 0.1, "Adam", 1e-5, 0.0, 0.999, 5, 60
    ),
    "openml-kc1": _config(
        "OPENML1068.yaml", "roberta", 44, 20, 128, 32, 1, -1, 0, "SGD", 1e-4, 1e-5, 0.99, 5, 60
    ),
}  # fmt: skip


def paper_values(task: str) -> Sections:
    """The fields the paper preset sets for `task`: METHOD_VALUES, then its config's."""
    config = AUTHORS_CONFIGS.get(task)
    return merged(METHOD_VALUES, authors_sections(config) if config is not None else {})


def paper_backbone(task: str) -> str | None:
    config = AUTHORS_CONFIGS.get(task)
    return None if config is None else BODY_NAMES[config.weight]


def sequence_length_mismatches(specs) -> dict[str, tuple[int, int]]:
    """{task: (registered max_seq_len, theirs)} for the 1D text-body tasks among `specs`
    (TaskSpecs) whose registered sequence length differs from their config's (2D tasks
    run on Swin's own grid, tabular ones take one token per feature: neither uses it)."""
    return {
        spec.name: (spec.max_seq_len, AUTHORS_CONFIGS[spec.name].target_seq_len)
        for spec in specs
        if spec.name in AUTHORS_CONFIGS
        and spec.modality == "1d"
        and AUTHORS_CONFIGS[spec.name].weight == "roberta"
        and spec.max_seq_len != AUTHORS_CONFIGS[spec.name].target_seq_len
    }


PRESETS.register(
    "paper",
    Preset(
        "paper",
        "the authors' settings (their src/configs/*.yaml); see docs/paper-preset.md",
        values=paper_values,
        backbone=paper_backbone,
    ),
)
