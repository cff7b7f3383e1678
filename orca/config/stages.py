"""Hyperparameter configs of the three stages. Each validates itself on construction.

A field that names a choice is a `str` annotated with the registry that holds the choices
(orca.config.base.Registered): it is checked against that registry, and Prefect's parameter
schema lists the registry's names. Registering an entry is all it takes to make a new
choice valid:

    proxy.dataset                      orca.proxy.datasets.PROXY_DATASETS (or "auto")
    align.metric                       orca.alignment.metrics.ALIGNMENT_METRICS
    align.procedure                    orca.training.align_procedures.ALIGN_PROCEDURES
    align.optimizer, refine.optimizer  orca.training.optim.OPTIMIZERS
    refine.schedule                    orca.training.optim.SCHEDULES
    refine.accumulated_loss            orca.training.optim.ACCUMULATED_LOSS
    align.otdd_inner                   orca.otdd.INNER_KINDS
    align.otdd_cost                    orca.otdd.COST_CONVENTIONS
    align.embedder_init                orca.model.embedder_init.EMBEDDER_INITS

The registries are imported when a config is validated or its schema is made, not when
this module is: this module stays free of torch, and none of those modules imports this
one. (proxy.dataset also takes "auto", so it is checked by hand.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from orca.config.base import Config, Registered, check_choice, check_number

DEFAULT_BETAS = (0.9, 0.999)  # torch's Adam/AdamW betas; the authors' configs use (0.9, 0.98)


def check_betas(field: str, value: object) -> tuple[float, float]:
    """`value` as a (beta1, beta2) tuple, each in [0, 1); raises naming `field` otherwise."""
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ValueError(
            f"{field}={value!r} must be two numbers [beta1, beta2], each in [0, 1), "
            "e.g. [0.9, 0.999]"
        )
    for beta in value:
        check_number(field, beta, minimum=0)
        if beta >= 1:
            raise ValueError(f"{field}={value!r} is out of range; each beta must be < 1")
    return (float(value[0]), float(value[1]))


@dataclass(frozen=True)
class ProxyConfig(Config):
    """Stage 2's source side: the labelled proxy dataset of the body's own modality.

    `dataset` names one in orca.proxy.datasets, or is "auto": the paper's proxy for the
    body's kind when a local copy exists (CoNLL-2003, CIFAR-10), else the packaged one
    (WNUT-16, MNIST). PipelineConfig resolves "auto" so runs record the concrete name.
    `max_tokens` applies to text proxies.
    """

    dataset: str = "auto"
    max_examples: int = 5000
    max_tokens: int = 64
    batch_size: int = 64

    def __post_init__(self) -> None:
        from orca.proxy.datasets import PROXY_DATASETS

        check_choice("proxy.dataset", self.dataset, ("auto", *PROXY_DATASETS.names()))
        check_number("proxy.max_examples", self.max_examples, minimum=10, integer=True)
        check_number("proxy.max_tokens", self.max_tokens, minimum=4, integer=True)
        check_number("proxy.batch_size", self.batch_size, minimum=1, integer=True)


@dataclass(frozen=True)
class AlignConfig(Config):
    """Stage 2: train the embedder alone so embedded target data is close to the proxy.

    procedure "per_class" is the authors': one optimizer step per epoch after visiting every
    target class, with at most `samples_per_class` target examples per class, each class's
    loss weighted by its frequency, and StepLR x0.2 at `lr_milestones`. "minibatch" takes a
    step per shuffled batch of `batch_size` targets. Training stops after `epochs`, or as
    soon as the epoch's distance is at or below `target_distance`. The default lr is 10x
    RefineConfig's, as in the paper. The optimizer uses `weight_decay`, and `momentum` (SGD)
    or `betas` (Adam, AdamW), as the authors' embedder optimizer takes the task's.

    OTDD (metric "otdd"): `otdd_inner` names the label distances, `otdd_epsilon` the
    entropic regularisation and `otdd_cost` the outer cost's convention ("squared":
    ||x - y||^2 + W; "half": half of it, as the OTDD library the authors use computes it).
    `embedder_init` chooses how the embedder starts (orca.model.embedder_init): orca's
    initialisation, or the authors' ("paper"; with 0 epochs, their no-align embedder).
    """

    metric: Annotated[str, Registered("orca.alignment.metrics", "ALIGNMENT_METRICS")] = "otdd"
    procedure: Annotated[str, Registered("orca.training.align_procedures", "ALIGN_PROCEDURES")] = (
        "per_class"
    )
    epochs: int = 60
    lr: float = 1e-3
    optimizer: Annotated[str, Registered("orca.training.optim", "OPTIMIZERS")] = "adam"
    weight_decay: float = 0.0
    momentum: float = 0.9  # SGD
    betas: tuple[float, float] = DEFAULT_BETAS  # Adam, AdamW
    lr_milestones: tuple[int, ...] = (20, 40, 60)
    lr_gamma: float = 0.2
    samples_per_class: int = 128
    otdd_inner: Annotated[str, Registered("orca.otdd", "INNER_KINDS")] = "exact"
    otdd_epsilon: float = 0.1
    otdd_cost: Annotated[str, Registered("orca.otdd", "COST_CONVENTIONS")] = "squared"
    embedder_init: Annotated[str, Registered("orca.model.embedder_init", "EMBEDDER_INITS")] = "orca"
    max_source_samples: int = 5000
    batch_size: int = 64
    target_distance: float | None = None

    def __post_init__(self) -> None:
        self.check_registered("align")
        check_number("align.batch_size", self.batch_size, minimum=2, integer=True)
        if self.target_distance is not None:
            check_number("align.target_distance", self.target_distance)
        check_number("align.epochs", self.epochs, minimum=0, integer=True)
        check_number("align.lr", self.lr, minimum=0, exclusive_minimum=True)
        check_number("align.weight_decay", self.weight_decay, minimum=0)
        check_number("align.momentum", self.momentum, minimum=0, maximum=1)
        object.__setattr__(self, "betas", check_betas("align.betas", self.betas))
        if not isinstance(self.lr_milestones, (list, tuple)):
            raise ValueError(
                f"align.lr_milestones={self.lr_milestones!r} must be a list of epoch numbers, "
                "e.g. [20, 40]"
            )
        object.__setattr__(self, "lr_milestones", tuple(self.lr_milestones))
        for milestone in self.lr_milestones:
            check_number("align.lr_milestones", milestone, minimum=1, integer=True)
        check_number("align.lr_gamma", self.lr_gamma, minimum=0, exclusive_minimum=True)
        check_number("align.samples_per_class", self.samples_per_class, minimum=2, integer=True)
        check_number("align.otdd_epsilon", self.otdd_epsilon, minimum=0, exclusive_minimum=True)
        check_number("align.max_source_samples", self.max_source_samples, minimum=10, integer=True)


AUTO = "auto"


def _check_auto_or_number(field: str, value: object, **bounds: object) -> None:
    if value != AUTO:
        try:
            check_number(field, value, **bounds)  # type: ignore[arg-type]
        except ValueError as err:
            raise ValueError(f"{err}, or 'auto' (the recipe chooses it)") from None


@dataclass(frozen=True)
class RefineConfig(Config):
    """Stage 3: fine-tune embedder, body and predictor on the task loss.

    `epochs`, `batch_size`, `lr` and `patience` default to "auto": the recipe
    (orca/training/recipe.py) chooses them from the data and a measured throughput, fitting
    the epochs it chooses into `budget_s` seconds of training. Explicit values are kept.
    `patience=None` turns early stopping off. `dropout` overrides the body's dropout
    during fine-tuning (0, as the authors do; None keeps the body's own). The embedder and
    predictor train at `task_lr_scale` x lr. `probe_steps` > 0 first fits the predictor
    alone on the frozen model's outputs (orca/training/probe_warm_start.py). `mixup` > 0 trains
    on mixed example pairs ("auto": for class labels only; orca/training/mixup.py).

    The optimizer uses `momentum` (SGD) or `betas` (Adam, AdamW). After `warmup_fraction` of
    the steps the lr decays by `schedule`, reaching its end value at the last epoch, or at
    `decay_epochs` when given (the authors' WarmupLR decays over its own horizon, often
    longer than training). `accumulated_loss` says how the micro-batch losses of one step
    combine over `accumulation_steps` ("mean", orca's; "sum", the authors').
    """

    epochs: int | str = AUTO
    batch_size: int | str = AUTO
    lr: float | str = AUTO
    optimizer: Annotated[str, Registered("orca.training.optim", "OPTIMIZERS")] = "adamw"
    weight_decay: float = 0.0
    momentum: float = 0.9  # SGD
    betas: tuple[float, float] = DEFAULT_BETAS  # Adam, AdamW
    schedule: Annotated[str, Registered("orca.training.optim", "SCHEDULES")] = "linear"
    warmup_fraction: float = 0.1
    decay_epochs: int | None = None  # the decay's end (None: the last epoch)
    accumulation_steps: int = 1
    accumulated_loss: Annotated[str, Registered("orca.training.optim", "ACCUMULATED_LOSS")] = "mean"
    clip_norm: float | None = 1.0
    patience: int | str | None = AUTO
    budget_s: float = 600.0
    dropout: float | None = 0.0
    task_lr_scale: float = 10.0
    probe_steps: int = 200
    mixup: float | str = 0.0  # Beta(alpha, alpha) mixup: 0 off, "auto" for class labels
    eval_batch_size: int = 64
    # Seconds of training between per-epoch checkpoints (0: after every epoch). A crash loses
    # at most about this much work; short runs are not slowed by writing the model each epoch.
    checkpoint_interval_s: float = 60.0
    # Data-parallel training processes (torchrun, one per GPU or CPU share; see
    # orca/stages/refine_distributed.py). 1: train in the stage's own process.
    processes: int = 1

    def __post_init__(self) -> None:
        self.check_registered("refine")
        _check_auto_or_number("refine.epochs", self.epochs, minimum=1, integer=True)
        _check_auto_or_number("refine.batch_size", self.batch_size, minimum=1, integer=True)
        _check_auto_or_number("refine.lr", self.lr, minimum=0, exclusive_minimum=True)
        check_number("refine.weight_decay", self.weight_decay, minimum=0)
        check_number("refine.momentum", self.momentum, minimum=0, maximum=1)
        object.__setattr__(self, "betas", check_betas("refine.betas", self.betas))
        check_number("refine.warmup_fraction", self.warmup_fraction, minimum=0, maximum=1)
        if self.decay_epochs is not None:
            check_number("refine.decay_epochs", self.decay_epochs, minimum=1, integer=True)
        check_number("refine.accumulation_steps", self.accumulation_steps, minimum=1, integer=True)
        if self.clip_norm is not None:
            check_number("refine.clip_norm", self.clip_norm, minimum=0, exclusive_minimum=True)
        if self.patience is not None:
            _check_auto_or_number("refine.patience", self.patience, minimum=1, integer=True)
        check_number("refine.budget_s", self.budget_s, minimum=0, exclusive_minimum=True)
        if self.dropout is not None:
            check_number("refine.dropout", self.dropout, minimum=0, maximum=0.9)
        check_number("refine.task_lr_scale", self.task_lr_scale, minimum=0, exclusive_minimum=True)
        check_number("refine.probe_steps", self.probe_steps, minimum=0, integer=True)
        _check_auto_or_number("refine.mixup", self.mixup, minimum=0, maximum=10)
        check_number("refine.eval_batch_size", self.eval_batch_size, minimum=1, integer=True)
        check_number("refine.checkpoint_interval_s", self.checkpoint_interval_s, minimum=0)
        check_number("refine.processes", self.processes, minimum=1, integer=True)

    @property
    def needs_plan(self) -> bool:
        """Whether a field that needs the measured throughput is left to the recipe (an
        "auto" patience alone follows from the epochs: fine_tune resolves it)."""
        return AUTO in (self.epochs, self.batch_size, self.lr)

    def resolved(self, plan) -> RefineConfig:
        """This config with the recipe's choices (an orca.training.recipe.RefinePlan)."""
        return self.replace(
            epochs=plan.epochs, batch_size=plan.batch_size, lr=plan.lr, patience=plan.patience
        )
