"""Where independent jobs run: ``local`` (this process; the Python API's default), ``auto`` (the CLI's),
``processes``, ``ray``, or an executor plugin.

Executors register through the ``ser_audit.executors`` entry-point group (a class taking no
arguments), like the bundled ones.
"""

from __future__ import annotations

from ser_audit.execution.interface import Executor

EXECUTOR_GROUP = "ser_audit.executors"


def executors() -> dict[str, type[Executor]]:
    from ser_audit.plugins import load_plugins

    return load_plugins(EXECUTOR_GROUP, kind="executor")


def executor(name: str) -> Executor:
    from ser_audit.plugins import registered

    return registered(EXECUTOR_GROUP, name, kind="executor", flag="--executor")()
