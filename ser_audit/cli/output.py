"""Writing a finished report in the asked formats, the summary, and the gate verdict as the exit code."""

from __future__ import annotations

from typing import Callable

import typer

from ser_audit.cli.progress import STDERR
from ser_audit.report.model import Report
from ser_audit.report.writer import parse_formats, write_report


def finish(report: Report, out: str, formats: str, *, quiet: bool, summary: Callable[[Report], None]) -> None:
    """Write every format (exit 2 before any work if --format is wrong is the caller's check), then exit 1 on a failed gate."""
    written = write_report(report, out, parse_formats(formats))
    if written:
        if not quiet:
            summary(report)
        for path in written:
            STDERR.print(f"report written to {path}")
    if not all(gate.passed for gate in report.gates):
        raise typer.Exit(1)
