"""Helpers for typed, self-validating config dataclasses.

Each config is a frozen dataclass whose `__post_init__` checks its fields with the helpers
below, so that a bad value raises `ValueError` naming the field, the value and what is allowed.
`to_dict()` is what gets logged as MLflow params; `from_dict()` rejects unknown keys.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import math
import typing
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

C = TypeVar("C", bound="Config")


def check_choice(field: str, value: object, choices: Iterable[object]) -> None:
    choices = list(choices)
    if value not in choices:
        raise ValueError(
            f"{field}={value!r} is not a valid choice; expected one of: "
            + ", ".join(repr(c) for c in choices)
        )


def check_number(
    field: str,
    value: object,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    exclusive_minimum: bool = False,
    integer: bool = False,
) -> None:
    kind = "an integer" if integer else "a number"
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok_type:
        raise ValueError(f"{field}={value!r} must be {kind}")
    if isinstance(value, float) and not math.isfinite(value):  # NaN or +-inf
        raise ValueError(f"{field}={value!r} must be a finite number")
    if minimum is not None:
        too_small = value <= minimum if exclusive_minimum else value < minimum
        if too_small:
            bound = ">" if exclusive_minimum else ">="
            raise ValueError(f"{field}={value!r} is out of range; expected {bound} {minimum}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{field}={value!r} is out of range; expected <= {maximum}")


class Registered:
    """Annotation metadata of a str config field whose valid values are a registry's names:

        optimizer: Annotated[str, Registered("orca.training.optim", "OPTIMIZERS")] = "adam"

    - `Config.check_registered(prefix)` checks every such field against its registry (an
      unknown name raises, naming the field, the value and the valid names), so registering
      an entry is all it takes to make it a valid choice;
    - a JSON schema made from the config lists the registry's names, in registration order,
      as the field's enum. Prefect makes one for a flow's parameters: its UI shows a
      drop-down, and its server refuses a run whose parameters name no entry.

    The registry is named by module and attribute, and imported only when it is needed, so
    a config module does not import torch, and no registry module imports a config.
    """

    def __init__(self, module: str, attribute: str) -> None:
        self.module, self.attribute = module, attribute

    def registry(self) -> Any:
        return getattr(importlib.import_module(self.module), self.attribute)

    def __repr__(self) -> str:
        return f"Registered({self.module}.{self.attribute})"

    def __get_pydantic_json_schema__(self, core_schema: Any, handler: Any) -> dict[str, Any]:
        """pydantic's hook for annotation metadata (duck-typed: orca imports no pydantic)."""
        schema = handler(core_schema)
        schema["enum"] = [name for name, _ in self.registry().items()]
        return schema


@functools.cache
def registered_fields(cls: type) -> tuple[tuple[str, Registered], ...]:
    """(field name, its Registered) of every field of `cls` annotated with one."""
    hints = typing.get_type_hints(cls, include_extras=True)
    return tuple(
        (name, marker)
        for name, hint in hints.items()
        for marker in getattr(hint, "__metadata__", ())
        if isinstance(marker, Registered)
    )


class Config:
    """Mixin for frozen dataclass configs: dict round-trip with unknown-key rejection."""

    def check_registered(self, prefix: str = "") -> None:
        """Check each Registered field against its registry; errors name `prefix.field`."""
        for name, marker in registered_fields(type(self)):
            field = f"{prefix}.{name}" if prefix else name
            marker.registry().check(getattr(self, name), field=field)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            out[f.name] = value.to_dict() if isinstance(value, Config) else value
        return out

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any] | None) -> C:
        if data is not None and not isinstance(data, Mapping):
            raise ValueError(
                f"{cls.__name__}: expected a mapping of field names to values, "
                f"got {data!r} ({type(data).__name__})"
            )
        data = dict(data or {})
        fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise ValueError(
                f"{cls.__name__}: unknown field(s) {', '.join(unknown)}; "
                f"valid fields: {', '.join(fields)}"
            )
        required = [name for name, f in fields.items() if _is_required(f)]
        missing = [name for name in required if name not in data]
        if missing:
            raise ValueError(
                f"{cls.__name__}: missing required field(s) {', '.join(missing)}; "
                f"required fields: {', '.join(required)}"
            )
        kwargs: dict[str, Any] = {}
        for name, value in data.items():
            sub = _config_type(fields[name])
            kwargs[name] = sub.from_dict(value) if sub and isinstance(value, dict) else value
        return cls(**kwargs)

    def replace(self: C, **changes: Any) -> C:
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]


def _is_required(field: dataclasses.Field) -> bool:
    return (
        field.init
        and field.default is dataclasses.MISSING
        and field.default_factory is dataclasses.MISSING
    )


def _config_type(field: dataclasses.Field) -> type[Config] | None:
    default_factory = field.default_factory
    is_config = isinstance(default_factory, type) and issubclass(default_factory, Config)
    return default_factory if is_config else None


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested dicts to dotted keys, for MLflow params."""
    out: dict[str, Any] = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, prefix=f"{name}."))
        else:
            out[name] = value
    return out
