"""Terminal rendering of API results (tables on stdout, JSON with --json)."""

from __future__ import annotations

import json
from typing import Any, Sequence

from rich.console import Console
from rich.table import Table

STDOUT = Console()


def print_json(data: Any) -> None:
    STDOUT.out(json.dumps(data, indent=2), highlight=False)


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(str(cell) for cell in row))
    STDOUT.print(table)


def leakage_summary(report: Any) -> None:
    leakage = report.leakage
    rows = [
        (r.layer, r.attacker_architecture, f"{r.accuracy.mean:.3f} ± {r.accuracy.std:.3f}",
         f"[{r.accuracy.ci_low:.3f}, {r.accuracy.ci_high:.3f}]", f"{r.chance:.3f}", f"{r.p_value:.2g}")
        for r in [*leakage.results, *([leakage.input_reference] if leakage.input_reference else [])]
    ]
    print_table(
        f"{leakage.attribute} leakage of {report.model.path} on {report.corpus.name} (speaker-disjoint folds)",
        ["layer", "attacker", "accuracy", "95% interval", "chance", "p"], rows,
    )
    if leakage.recommendation:
        STDOUT.print(f"recommendation: {leakage.recommendation.reason}")
    for gate in report.gates:
        verdict = "[green]pass[/green]" if gate.passed else "[red]FAIL[/red]"
        STDOUT.print(f"gate {gate.name} <= {gate.threshold}: {gate.value:.3f} {verdict} ({gate.detail})")
