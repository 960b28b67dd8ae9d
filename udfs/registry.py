"""Named entries of one kind, each registered by the module that defines it: source adapters,
shard formats, per-sample filters. A registry imports its built-in modules the first time it
is asked, so importing it stays cheap."""
from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str, builtin: str | None = None):
        """``kind`` names the entries in errors ("source format"); importing the module
        ``builtin`` registers the built-in entries."""
        self.kind = kind
        self.builtin = builtin
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """A decorator registering a class (which gets ``name`` as its ``name``) or a function."""
        def decorate(entry: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            if isinstance(entry, type):
                entry.name = name
            self._entries[name] = entry
            return entry

        return decorate

    def get(self, name: str) -> T:
        self._load()
        try:
            return self._entries[name]
        except KeyError:
            raise ValueError(f"unknown {self.kind} {name!r}; known: {', '.join(sorted(self._entries))}") from None

    def names(self) -> tuple[str, ...]:
        """The names in registration order."""
        self._load()
        return tuple(self._entries)

    def _load(self) -> None:
        if self.builtin is not None:
            importlib.import_module(self.builtin)
