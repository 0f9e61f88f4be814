"""``python -m ser_audit`` is the ``ser-audit`` command."""

from ser_audit.cli.main import entry

entry()
