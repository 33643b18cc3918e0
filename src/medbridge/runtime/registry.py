"""The registry: every adapter and connector the composition root can choose, each as a name,
a typed config and a constructor (DESIGN.md, "A connector has one shape").

A ``Registration`` says three things and nothing else:

- ``config``: the class of its typed configuration (connectors never read settings);
- ``configure(settings)``: that configuration as the settings name it, or None when the
  settings do not ask for this component (no ``erp_url``: no ERP);
- ``construct(config, context)``: the component, from its config and what it is wired to
  (the engine for a bus; the built core for an ERP or a listener).

A ``Registry`` holds the registrations of one kind (buses, ERPs, listeners); the settings
choose among them (``configured``), and nothing else in MedBridge picks an implementation.
Registering a name twice is a programming error (``ValueError``); asking for an unknown name
raises ``KeyError`` naming the known ones.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from medbridge.settings import Settings

C = TypeVar("C")
X = TypeVar("X")
T = TypeVar("T")


@dataclass(frozen=True)
class Registration(Generic[C, X, T]):
    name: str
    config: type[C]
    configure: Callable[[Settings], C | None]
    construct: Callable[[C, X], T]

    def build(self, config: C, context: X) -> T:
        if not isinstance(config, self.config):
            raise TypeError(
                f"{self.name} takes a {self.config.__name__}, not a {type(config).__name__}"
            )
        return self.construct(config, context)


class Registry(Generic[X, T]):
    """The registrations of one kind of component, by name, in registration order."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Registration[Any, X, T]] = {}

    def register(
        self,
        name: str,
        config: type[C],
        configure: Callable[[Settings], C | None],
        construct: Callable[[C, X], T],
    ) -> None:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered already")
        self._entries[name] = Registration(name, config, configure, construct)

    def __getitem__(self, name: str) -> Registration[Any, X, T]:
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(self._entries) or "none"
            raise KeyError(f"no {self.kind} named {name!r} (known: {known})") from None

    def names(self) -> list[str]:
        return list(self._entries)

    def configured(self, settings: Settings) -> Iterator[tuple[Registration[Any, X, T], Any]]:
        """Each registration the settings ask for, with its config, in registration order."""
        for registration in self._entries.values():
            config = registration.configure(settings)
            if config is not None:
                yield registration, config
