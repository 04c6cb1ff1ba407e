"""A named registry: the one list of names that configs, CLI choices and docs read.

Each pluggable family (encoders, fusions, loss terms) owns one :class:`Registry`; built-ins
register themselves with ``@REGISTRY.register("name")`` at import. Lookups are
case-insensitive and an unknown name is a :class:`~emimic.errors.ConfigError` that lists the
available names, so a typo in a YAML file is one clear sentence rather than a ``KeyError``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from emimic.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Names → objects of one kind (``kind`` is used in error messages)."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        key = name.lower()

        def decorate(item: T) -> T:
            if key in self._items:
                raise ValueError(f"duplicate {self.kind} {name!r}")
            self._items[key] = item
            return item

        return decorate

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._items

    def check(self, name: str) -> str:
        """Return the canonical (lower-case) name, or raise a ConfigError listing the available ones."""
        if name not in self:
            raise ConfigError(f"unknown {self.kind} {name!r}; available: {', '.join(self.names())}.")
        return name.lower()

    def get(self, name: str) -> T:
        return self._items[self.check(name)]
