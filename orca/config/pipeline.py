"""The whole pipeline's configuration: the flow's parameter, validated on construction.

A config with a `task_file` reads and validates that file (orca.data.task_file's
`read_task_file`) but registers nothing: whoever runs the stages registers the task
(`load_task_file`) in the process that runs them.

`device` (orca.devices: auto, cuda, cpu) says where the torch stages run. It is kept as
given ("auto" stays "auto", so a config made on a laptop still means "the GPU" on a GPU
worker); `resolved_device` is what it means in the process that asks, and the stages are
called, and keyed in the cache, with that.

`preset` (orca.presets: orca, paper) names settings applied over the task's registered
hyperparameters, under the user's own: `for_task` applies it between the task's defaults
and `overrides`; a config given as a mapping (a flow parameter, `from_dict`) gets it
applied under the sections it gives (`with_preset`). A config built from its fields in
Python takes them as they are.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any

from orca.config.base import Config, Registered, check_number
from orca.config.stages import AlignConfig, ProxyConfig, RefineConfig
from orca.data.task_file import check_task_name_free, read_task_file
from orca.data.tasks import TaskSpec, get_task, task_names
from orca.devices import resolve_device
from orca.methods import METHODS
from orca.model.bodies import backbone_kind
from orca.model.embedders import EMBEDDERS
from orca.presets import DEFAULT_PRESET, PRESETS, apply_preset, preset_backbone
from orca.proxy.datasets import resolve_proxy_name
from orca.registry import UnknownNameError


@dataclass(frozen=True)
class PipelineConfig(Config):
    """One task x backbone x method x seed, with every stage's hyperparameters resolved."""

    task: str
    backbone: str
    method: Annotated[str, Registered("orca.methods", "METHODS")] = "orca"
    seed: int = 0
    proxy: ProxyConfig = field(default_factory=ProxyConfig)
    align: AlignConfig = field(default_factory=AlignConfig)
    refine: RefineConfig = field(default_factory=RefineConfig)
    task_file: str | None = None  # a user's YAML task file, read (not registered) here
    allow_outside: bool = False  # its split files may lie outside its folder (--allow-outside)
    # Seed of the validation split carved from train. Fixed across `seed`s by default, so
    # seeds vary initialisation and data order on the same splits, and ingest runs once.
    split_seed: int = 0
    train_fraction: float = 1.0  # < 1: keep only this share of train (data-limited ablation)
    # Where proxy, align, refine and evaluate run (orca.devices): auto = CUDA when present.
    device: Annotated[str, Registered("orca.devices", "DEVICES")] = "auto"
    # The settings applied over the task's defaults (orca.presets); recorded with the run.
    preset: Annotated[str, Registered("orca.presets", "PRESETS")] = DEFAULT_PRESET

    def __post_init__(self) -> None:
        modality = task_spec(self.task, self.task_file, self.allow_outside).modality
        self.check_registered()  # method, device
        resolve_device(self.device)  # "cuda" on a machine without CUDA fails here, before work
        # A classical method has no body: the backbone is carried (and shown) but unused, so
        # it is not checked, and there is no proxy dataset to resolve for it.
        body_kind = None if self.family == "classical" else backbone_kind(self.backbone)
        if body_kind is not None and f"{body_kind}/{modality}" not in EMBEDDERS:
            raise ValueError(
                f"backbone {self.backbone!r} is a {body_kind} body, which takes no {modality!r} "
                f"input (task {self.task!r}); supported body/input pairs: "
                f"{', '.join(EMBEDDERS.names())}"
            )
        check_number("seed", self.seed, minimum=0, integer=True)
        check_number("split_seed", self.split_seed, minimum=0, integer=True)
        check_number(
            "train_fraction", self.train_fraction, minimum=0, maximum=1, exclusive_minimum=True
        )
        for name, kind in (
            ("proxy", ProxyConfig),
            ("align", AlignConfig),
            ("refine", RefineConfig),
        ):
            value = getattr(self, name)
            if isinstance(value, dict):
                object.__setattr__(self, name, kind.from_dict(value))
            elif not isinstance(value, kind):
                raise ValueError(f"{name} must be a {kind.__name__} or a dict, got {value!r}")
        method_metric = METHODS.get(self.method).align_metric
        if method_metric is not None and self.align.metric != method_metric:
            object.__setattr__(self, "align", replace(self.align, metric=method_metric))
        dataset = self.proxy.dataset
        if body_kind is not None:
            dataset = resolve_proxy_name(self.proxy.dataset, body_kind)
        if dataset != self.proxy.dataset:
            object.__setattr__(self, "proxy", replace(self.proxy, dataset=dataset))

    @classmethod
    def for_task(
        cls,
        task: str | None,
        *,
        backbone: str | None = None,
        method: str = "orca",
        seed: int = 0,
        overrides: dict[str, dict[str, Any]] | None = None,
        task_file: str | None = None,
        allow_outside: bool = False,
        device: str = "auto",
        preset: str | None = None,
    ) -> PipelineConfig:
        """The task's registered defaults, then `preset`'s values (orca.presets; None: the
        one the task's defaults include, "orca" but for a task file's `preset:`), then
        `overrides` per section (proxy/align/refine), which win. The body is `backbone`,
        else the preset's for the task, else the task's default. With `task_file`, the task
        it declares (`task` may then be None); `allow_outside` lets its split files lie
        outside its folder; `device`: orca.devices."""
        if preset is not None:
            PRESETS.check(preset, field="preset")
        if task_file is not None:
            task_file = str(Path(task_file).expanduser().resolve())
            task = task or read_task_file(task_file, allow_outside=allow_outside).name
        spec = task_spec(task, task_file, allow_outside)
        overrides = dict(overrides or {})
        unknown = sorted(set(overrides) - {"proxy", "align", "refine"})
        if unknown:
            raise ValueError(f"unknown override section(s) {unknown}; valid: proxy, align, refine")
        applied = preset_to_apply(preset, spec)
        values = apply_preset(applied, spec.name, registered_sections(spec), overrides)
        resolved = {name: kind.from_dict(values[name]) for name, kind in SECTION_TYPES.items()}
        return cls(
            task=task,
            backbone=backbone or preset_backbone(applied, spec.name) or spec.default_backbone,
            preset=spec.preset if preset is None else preset,
            method=method,
            seed=seed,
            task_file=task_file,
            allow_outside=allow_outside,
            device=device,
            **resolved,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> PipelineConfig:
        """Build from a mapping, its preset applied first (`with_preset`)."""
        return super().from_dict(with_preset(data))

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        """pydantic's hook, used for a flow's parameters (orca imports pydantic only when
        pydantic calls this): a config given as a mapping gets its preset applied
        (`with_preset`) before it is validated; the schema is the dataclass's own."""
        from pydantic_core import core_schema

        return core_schema.no_info_before_validator_function(with_preset, handler(source))

    @property
    def data_version(self) -> str:
        """Changes when a task file's data changes, so ingest's cache key sees it."""
        return task_spec(self.task, self.task_file, self.allow_outside).data_version

    @property
    def resolved_device(self) -> str:
        """The torch device type ("cuda" or "cpu") `device` means in this process."""
        return resolve_device(self.device)

    @property
    def family(self) -> str:
        """The method's family: "orca" (the five neural stages) or "classical"."""
        return METHODS.get(self.method).family

    @property
    def refine_mode(self) -> str:
        return METHODS.get(self.method).refine_mode

    @property
    def pretrained_body(self) -> bool:
        return METHODS.get(self.method).pretrained_body

    @property
    def align_epochs(self) -> int:
        """Embedder epochs actually run: zero for methods that skip stage 2."""
        return self.align.epochs if METHODS.get(self.method).align else 0


SECTION_TYPES = {"proxy": ProxyConfig, "align": AlignConfig, "refine": RefineConfig}


def registered_sections(spec: TaskSpec) -> dict[str, dict[str, Any]]:
    """A task's registered hyperparameters, as {section: fields}."""
    return {
        "proxy": ProxyConfig().to_dict(),
        "align": spec.align.to_dict(),
        "refine": spec.refine.to_dict(),
    }


def preset_to_apply(requested: str | None, spec: TaskSpec) -> str:
    """The preset a run has yet to apply over `spec`'s registered hyperparameters: none
    ("orca") when it names none, or names the one they already include (a task file's)."""
    return DEFAULT_PRESET if requested in (None, spec.preset) else requested


def with_preset(data: Any) -> Any:
    """A config given as a mapping, with its `preset` applied: each section is the task's
    registered hyperparameters, then the preset's values, then the fields of that section
    `data` gives, which win; without a `backbone`, the preset's body for the task (else the
    task's). Anything but a mapping, and a mapping without a preset (or with "orca", or the
    one its task's defaults include), is returned as it is: its missing sections are the
    configs' own defaults, as before."""
    if not isinstance(data, Mapping) or data.get("preset", DEFAULT_PRESET) == DEFAULT_PRESET:
        return data
    PRESETS.check(data["preset"], field="preset")
    spec = task_spec(data.get("task"), data.get("task_file"), bool(data.get("allow_outside")))
    name = preset_to_apply(data["preset"], spec)
    if name == DEFAULT_PRESET:
        return data
    given = {
        section: _section_fields(section, data[section])
        for section in SECTION_TYPES
        if data.get(section) is not None
    }
    sections = apply_preset(name, spec.name, registered_sections(spec), given)
    backbone = data.get("backbone") or preset_backbone(name, spec.name) or spec.default_backbone
    return {**data, **sections, "backbone": backbone}


def _section_fields(section: str, value: Any) -> dict[str, Any]:
    if isinstance(value, Config):
        return value.to_dict()
    if isinstance(value, Mapping):
        return dict(value)
    raise ValueError(
        f"{section} must be a {SECTION_TYPES[section].__name__} or a mapping of its fields, "
        f"got {value!r}"
    )


def task_spec(task: str | None, task_file: str | None, allow_outside: bool = False) -> TaskSpec:
    """The spec of `task`, registering nothing: with `task_file`, the one that file declares
    (read and validated; `task` must be its name, which no other task may hold), else a
    registered task. Raises naming the task and the valid ones."""
    if task_file is not None:
        spec = read_task_file(task_file, allow_outside=allow_outside)
        if task != spec.name:
            raise ValueError(f"task={task!r} but the task file {task_file} declares {spec.name!r}")
        check_task_name_free(spec)
        return spec
    if task not in task_names():
        raise UnknownNameError(
            f"task: unknown task {task!r}; valid tasks: {', '.join(task_names())}"
        )
    return get_task(task)
