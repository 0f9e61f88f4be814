"""Loading plugins from entry points: lazily, and a broken one is named, not fatal (unless strict)."""

from __future__ import annotations

import warnings
from importlib.metadata import entry_points
from typing import Any

from ser_audit.errors import ConfigError


def load_plugins(group: str, *, kind: str, strict: bool = False) -> dict[str, Any]:
    """Every object registered under ``group``, by entry-point name.

    A plugin that fails to import is skipped with a warning naming it, or raises ConfigError
    when ``strict``.
    """
    found: dict[str, Any] = {}
    for entry in entry_points(group=group):
        try:
            found[entry.name] = entry.load()
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
