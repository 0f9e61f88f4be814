"""Where independent jobs run: ``auto`` (the default), ``local`` (this process), ``processes``, ``ray``, or an
executor plugin.

Executors register through the ``ser_audit.executors`` entry-point group (a class taking no
arguments), like the bundled ones; ``auto`` also hears the run's device.
"""

from __future__ import annotations

from ser_audit.execution.interface import Executor

EXECUTOR_GROUP = "ser_audit.executors"


def executors() -> dict[str, type[Executor]]:
    from ser_audit.plugins import load_plugins

    return load_plugins(EXECUTOR_GROUP, kind="executor")


def executor(name: str, *, device: str = "cpu") -> Executor:
    """The executor registered as ``name``; ``device`` (resolved, as ``cpu`` or ``cuda:0``) guides ``auto``."""
    from ser_audit.execution.auto import AutoExecutor
    from ser_audit.plugins import registered

    factory = registered(EXECUTOR_GROUP, name, kind="executor", flag="--executor")
    return AutoExecutor(device) if factory is AutoExecutor else factory()
