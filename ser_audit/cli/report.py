"""``ser-audit report REPORT.json --format html|md|junit|json [--out FILE]``: re-render without torch."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from ser_audit.files import check_writable
from ser_audit.report.diff import compare, render_markdown
from ser_audit.report.render import renderer_for
from ser_audit.report.writer import read_report, write_text_atomic


def report(
    path: Annotated[Path, typer.Argument(help="A report.json written by ser-audit.")],
    format: Annotated[str, typer.Option("--format", help="html, md, junit or json.")] = "md",
    out: Annotated[Optional[Path], typer.Option("--out", help="File to write; stdout when omitted or '-'.")] = None,
    baseline: Annotated[
        Optional[Path], typer.Option("--baseline", help="An earlier report: show what got better or worse.")
    ] = None,
) -> None:
    """Re-render a saved report; with --baseline, what changed since an earlier one."""
    renderer = renderer_for(format)
    if out is not None and str(out) == "-":  # as the audit commands read --out -
        out = None
    if out is not None:
        check_writable(out, flag="--out")
    current = read_report(path)
    if baseline is not None:
        current.baseline = compare(read_report(baseline), current)
    # Markdown with a baseline is the change table a reviewer wants; other formats carry it in `baseline`.
    text = (render_markdown(current.baseline) if current.baseline is not None and format == "md"
            else renderer.render(current))
    if out is None:
        sys.stdout.write(text)
    else:
        write_text_atomic(out, text)
