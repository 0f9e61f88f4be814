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
