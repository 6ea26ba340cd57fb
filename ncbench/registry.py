"""Name → object registries (tasks, data sets) with "did you mean" errors, after timm/lm-eval."""
from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError):
    """An unknown registry name; the message lists the close names."""

    def __init__(self, kind: str, name: str, choices: list[str], listing: str | None = None):
        self.kind, self.name, self.choices = kind, name, choices
        close = difflib.get_close_matches(name, choices, n=5, cutoff=0.5)
        if not close:  # substring matches help for prefixes such as "resnet"
            close = [c for c in choices if name.lower() in c.lower()][:5]
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        listing = listing or f"`ncbench list {kind}s` shows all"
        super().__init__(f"unknown {kind} '{name}'.{hint} ({listing})")

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain
        return self.args[0]


def suggest(kind: str, name: str, choices: list[str], listing: str | None = None) -> UnknownNameError:
    """The error for an unknown `name`, listing close `choices`; `listing` says where to see them all."""
    return UnknownNameError(kind, name, sorted(choices), listing)


class Registry(Generic[T]):
    """A named collection; registering a name twice is an error."""

    def __init__(self, kind: str, loader: Callable[[], None] | None = None):
        """`loader`, if given, is called once before the first lookup (e.g. to import the modules that
        register the items), so that building the registry costs nothing until it is read."""
        self.kind = kind
        self._items: dict[str, T] = {}
        self._loader = loader

    def _load(self) -> None:
        if self._loader is not None:
            loader, self._loader = self._loader, None
            loader()

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            self._load()   # the registry's own items first: a later duplicate is always the error
            if name in self._items:
                raise ValueError(f"{self.kind} '{name}' is already registered ({self._items[name]!r})")
            self._items[name] = obj
            return obj

        return decorator

    def get(self, name: str) -> T:
        self._load()
        try:
            return self._items[name]
        except KeyError:
            raise suggest(self.kind, name, list(self._items)) from None

    def names(self) -> list[str]:
        self._load()
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        self._load()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
