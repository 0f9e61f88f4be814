"""``ser-audit report REPORT.json --format html|md|junit|json [--out FILE]``: re-render without torch."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from ser_audit.report.render import renderer_for
from ser_audit.report.writer import read_report, write_text_atomic


def report(
    path: Annotated[Path, typer.Argument(help="A report.json written by ser-audit.")],
    format: Annotated[str, typer.Option("--format", help="html, md, junit or json.")] = "md",
    out: Annotated[Optional[Path], typer.Option("--out", help="File to write; stdout when omitted.")] = None,
) -> None:
    """Re-render a saved report."""
    text = renderer_for(format).render(read_report(path))
    if out is None:
        sys.stdout.write(text)
    else:
        write_text_atomic(out, text)
