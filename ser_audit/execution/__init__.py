"""Where independent jobs run: ``local`` (this process) or ``ray``."""

from __future__ import annotations

from ser_audit.execution.interface import Executor


def executor(name: str) -> Executor:
    from ser_audit.errors import ConfigError

    if name == "local":
        from ser_audit.execution.local import LocalExecutor

        return LocalExecutor()
    if name == "ray":
        from ser_audit.execution.ray import RayExecutor

        return RayExecutor()
    raise ConfigError(f"--executor {name!r}: use local or ray")
