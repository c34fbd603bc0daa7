"""One small registry of named things (methods, restorers, recognizers, detectors, backends, commands).

A :class:`Registry` maps names to entries of one kind. Registering a taken name is an error unless
``replace``; an unknown name raises :class:`UnknownNameError` listing what exists, so every "unknown
X" message reads the same. An optional entry-point group lets other packages add entries; they
are loaded once, on first lookup, and a broken plugin is reported without breaking the built-ins.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from headveil.common.errors import HeadVeilError

T = TypeVar("T")
log = logging.getLogger(__name__)


class UnknownNameError(HeadVeilError, KeyError, ValueError):
    """No entry of that name is registered (the message lists the registered names)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class Registry(Generic[T]):
    """Named entries of one ``kind`` (used in messages, e.g. ``"restorer"``).

    Args:
        kind: what an entry is, for messages.
        entry_points: optional ``importlib.metadata`` entry-point group whose entries are added
            (by name) the first time the registry is read.
        error: the exception class raised for an unknown name (a subclass of
            :class:`UnknownNameError` for callers that catch a specific one).
    """

    def __init__(self, kind: str, entry_points: str | None = None, error: type[UnknownNameError] = UnknownNameError):
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._group = entry_points
        self._plugins_loaded = entry_points is None
        self._error = error

    def register(self, name: str, entry: T, replace: bool = False) -> T:
        """Add ``entry`` under ``name``; returns it (usable as a decorator through :meth:`add`)."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {self.kind} name must be a non-empty string; got {name!r}")
        if name in self._entries and not replace:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = entry
        return entry

    def add(self, name: str, replace: bool = False) -> Callable[[T], T]:
        """Decorator form of :meth:`register`."""
        return lambda entry: self.register(name, entry, replace)

    def _load_plugins(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        from importlib.metadata import entry_points

        for ep in entry_points(group=self._group):
            if ep.name in self._entries:
                log.warning("%s plugin %s (%s) ignored: the name is taken", self.kind, ep.name, ep.value)
                continue
            try:
                self._entries[ep.name] = ep.load()
            except Exception as exc:  # a broken plugin must not break the built-ins
                log.warning("%s plugin %s (%s) failed to load: %s", self.kind, ep.name, ep.value, exc)

    def get(self, name: str) -> T:
        """The entry ``name``; :class:`UnknownNameError` (or the registry's ``error``) when absent."""
        self._load_plugins()
        if name not in self._entries:
            raise self._error(f"unknown {self.kind} {name!r}; registered: {', '.join(self.names()) or 'none'}")
        return self._entries[name]

    def names(self) -> list[str]:
        """Registered names, sorted."""
        self._load_plugins()
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        self._load_plugins()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())


def resolve_backend(backends: Registry[Callable[[], bool]], name: str, preference: tuple[str, ...], hint: str = "") -> str:
    """Pick a backend from a registry of availability probes (``name → () -> bool``).

    ``"auto"`` → the first name of ``preference`` whose probe says it runs here; an explicit name is
    checked: unknown → :class:`UnknownNameError`, unavailable → ``BackendUnavailableError`` (with
    ``hint`` saying what it needs). Never a silent downgrade."""
    from headveil.common.errors import BackendUnavailableError

    if name == "auto":
        for cand in preference:
            if backends.get(cand)():
                return cand
        raise BackendUnavailableError(f"no {backends.kind} runs here")
    probe = backends.get(name)
    if not probe():
        here = ", ".join(n for n in backends.names() if backends.get(n)())
        raise BackendUnavailableError(f"{backends.kind} {name!r} is not available here{hint} (available: {here})")
    return name
