"""Name -> object registries, so that bodies, tasks, metrics and methods are chosen by name.

A registry raises on an unknown name (listing the valid ones) and on a duplicate registration.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(ValueError):
    """Raised when a name is not in a registry; the message lists the valid names."""


class Registry(Generic[T]):
    """A named collection of objects of one kind (e.g. "task", "metric")."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str, item: T | None = None) -> Callable[[T], T] | T:
        """Register `item` under `name`; without `item`, return a decorator."""

        def add(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = obj
            return obj

        return add if item is None else add(item)

    def unregister(self, name: str) -> T:
        """Remove and return `name` (used to re-register a task file that changed)."""
        self.check(name)
        return self._items.pop(name)

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}; valid {self.kind}s: {', '.join(self.names())}"
            ) from None

    def check(self, name: str, field: str | None = None) -> None:
        """Raise UnknownNameError (naming `field` if given) unless `name` is registered.
        This is how a config field that names an entry is validated: registering an entry
        is then all it takes to make it a valid choice."""
        if name not in self:
            where = f"{field}: " if field else ""
            raise UnknownNameError(
                f"{where}unknown {self.kind} {name!r}; "
                f"valid {self.kind}s: {', '.join(self.names())}"
            )

    def names(self) -> list[str]:
        """The registered names, sorted (as error messages list them)."""
        return sorted(self._items)

    def items(self) -> list[tuple[str, T]]:
        """(name, item) pairs in registration order (e.g. the paper's order of methods)."""
        return list(self._items.items())

    def __contains__(self, name: object) -> bool:
        try:
            return name in self._items
        except TypeError:  # an unhashable value (a list from YAML) is no registered name
            return False

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)
