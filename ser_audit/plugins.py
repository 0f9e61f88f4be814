"""Loading plugins from entry points: lazily, and a broken one is named, not fatal (unless strict)."""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from contextvars import ContextVar
from importlib.metadata import entry_points
from typing import Any, Iterator

from ser_audit.errors import ConfigError

_STRICT: ContextVar[bool] = ContextVar("strict_plugins", default=False)


@contextmanager
def strict_plugins(strict: bool = True) -> Iterator[None]:
    """Within this block every plugin problem (one that fails to import, two under one name) is an error:
    the CLI's ``--strict``."""
    token = _STRICT.set(strict)
    try:
        yield
    finally:
        _STRICT.reset(token)


def load_plugins(group: str, *, kind: str, strict: bool = False) -> dict[str, Any]:
    """Every object registered under ``group``, by entry-point name.

    A plugin that fails to import is skipped with a warning naming it; two registered under one
    name (two distributions, or a plugin shadowing a bundled entry) warn and the first is kept.
    Either raises ConfigError when ``strict`` or under ``strict_plugins``.
    """
    strict = strict or _STRICT.get()
    found: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for entry in entry_points(group=group):
        if entry.name in sources:
            if entry.value == sources[entry.name]:
                continue  # one distribution seen twice (an editable install beside its metadata)
            message = (f"two {kind} plugins are registered as {entry.name!r} under {group} ({sources[entry.name]} and "
                       f"{entry.value})")
            if strict:
                raise ConfigError(f"{message}; uninstall one, or run without --strict to keep the first")
            warnings.warn(f"{message}; using the first", stacklevel=3)
            continue
        try:
            found[entry.name] = entry.load()
            sources[entry.name] = entry.value
        except Exception as error:  # a third-party plugin may fail in any way on import
            if strict:
                raise ConfigError(f"{kind} plugin {entry.name!r} ({entry.value}) failed to load: {error}") from error
            warnings.warn(f"skipping {kind} plugin {entry.name!r} ({entry.value}): {error}", stacklevel=3)
    return found


def registered(group: str, name: str, *, kind: str, flag: str) -> Any:
    """The object registered as ``name`` under ``group``, or a ConfigError naming ``flag`` and the choices."""
    available = load_plugins(group, kind=kind)
    if name not in available:
        raise ConfigError(f"{flag} {name!r}: choose one of {', '.join(sorted(available))} "
                          f"(or register a {kind} under the {group} entry points)")
    return available[name]
