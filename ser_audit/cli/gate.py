"""``ser-audit gate REPORT.json --policy POLICY.toml``: the CI verdict on a saved report (no torch needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ser_audit.cli.render import STDOUT, plain
from ser_audit.files import check_writable
from ser_audit.report.policy import evaluate, load_policy
from ser_audit.report.render import renderer_for
from ser_audit.report.writer import read_report, write_text_atomic


def gate(
    path: Annotated[Path, typer.Argument(help="A report.json written by ser-audit.")],
    policy: Annotated[Path, typer.Option("--policy", help="TOML policy (schemas/policy.schema.json).")],
    baseline: Annotated[Optional[Path], typer.Option("--baseline", help="Earlier report, for [regression] rules.")] = None,
    junit: Annotated[Optional[Path], typer.Option("--junit", help="Also write JUnit XML, one case per gate.")] = None,
) -> None:
    """Check a saved report against a policy: exit 0 when every gate passes, 1 when one fails."""
    rules = load_policy(policy)
    if junit is not None:
        check_writable(junit, flag="--junit")
    report = read_report(path)
    earlier = read_report(baseline) if baseline else None
    report.gates = evaluate(rules, report, earlier)
    for item in report.gates:
        verdict = "[green]pass[/green]" if item.passed else "[red]FAIL[/red]"
        STDOUT.print(f"{verdict} {plain(item.name)}: {item.value:.3f} (threshold {item.threshold:g}) {plain(item.detail)}")
    if junit is not None:
        write_text_atomic(junit, renderer_for("junit").render(report))
    if not all(item.passed for item in report.gates):
        raise typer.Exit(1)
