"""Terminal rendering of API results (tables on stdout, JSON with --json)."""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Sequence

from rich.console import Console
from rich.markup import escape
from rich.table import Table


def _width() -> int | None:
    """The terminal's width, or, where stdout is a file or a CI log (rich would assume 80 columns and squeeze a
    leakage table's numbers to '0.…'), one wide enough for the widest table; COLUMNS still decides where set."""
    if os.environ.get("COLUMNS") or sys.stdout.isatty():
        return None
    return 200


STDOUT = Console(width=_width())


def plain(value: Any) -> str:
    """Data (labels, paths, names from the user's files) shown as text on a terminal: rich markup escaped
    (``[/bold]`` in a label would otherwise end the program), control characters other than line
    breaks and tabs spelled out (an ESC in a label would otherwise drive the terminal)."""
    text = "".join(ch if ch.isprintable() or ch in " \n\t" else ascii(ch)[1:-1] for ch in str(value))
    return escape(text)


def print_json(data: Any) -> None:
    STDOUT.out(json.dumps(data, indent=2), highlight=False)


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    table = Table(title=plain(title))
    for column in columns:
        table.add_column(plain(column))
    for row in rows:
        table.add_row(*(plain(cell) for cell in row))
    STDOUT.print(table)


def leakage_summary(report: Any) -> None:
    """A report with leakage, whole: its rows and notes, the robustness and comparison tables it carries, and the
    verdict table and sentence last, where a reader's eye lands. (``audit`` calls robustness_summary and
    comparison_summary after this one: for a report with leakage they print nothing.)"""
    leakage = report.leakage
    if leakage is None:
        return
    from ser_audit.report.render.sections import leakage_table

    table = leakage_table([*leakage.results, *leakage.references])
    print_table(
        f"{leakage.attribute} leakage of {report.model.path} on {report.corpus.name} (held-out speakers)",
        table.headers, table.rows,
    )
    for skipped in leakage.skipped:
        STDOUT.print(plain(f"not run: {skipped.layer} {skipped.scenario} {skipped.attacker_kind}: {skipped.reason}"))
    for item in leakage.verification:
        same = f", same gender {item.eer_same_gender:.3f}" if item.eer_same_gender is not None else ""
        STDOUT.print(plain(f"speaker verification from {item.layer}: EER {item.eer:.3f}{same}"))
    for finding in leakage.findings:
        verdict = {True: "reproduced", False: "not reproduced", None: "cannot tell"}[finding.reproduced]
        STDOUT.print(plain(f"P0 finding {finding.name}: {verdict} — {finding.evidence}"))
    if leakage.recommendation:
        STDOUT.print(plain(f"recommendation: {leakage.recommendation.reason}"))
    for gate in report.gates:
        verdict = "[green]pass[/green]" if gate.passed else "[red]FAIL[/red]"
        STDOUT.print(f"gate {plain(gate.name)} <= {gate.threshold}: {gate.value:.3f} {verdict} ({plain(gate.detail)})")
    _robustness_tables(report)
    _comparison_tables(report)
    if leakage.verdict is not None:  # the verdict last, where a reader's eye lands
        from ser_audit.report.render.sections import verdict_table

        layers = verdict_table(leakage.verdict, compact=True)
        print_table(f"{leakage.attribute} verdict per layer ({layers.caption})", layers.headers, layers.rows)
        STDOUT.print(plain(f"{leakage.attribute} verdict: {leakage.verdict.statement}"))


def robustness_summary(report: Any) -> None:
    """A robustness report's table (a report with leakage prints it from leakage_summary, before its verdict)."""
    if report.leakage is None:
        _robustness_tables(report)


def _robustness_tables(report: Any) -> None:
    if report.robustness is None:
        return
    print_table(f"robustness of {report.model.path} ({report.robustness.evaluation_set})",
                ["method", "eps", "UAR", "accuracy", "success", "gradient"], _robustness_rows(report.robustness))


def _robustness_rows(robustness: Any) -> list[tuple[Any, ...]]:
    return [(r.method, r.eps, f"{r.uar:.3f}", f"{r.accuracy:.3f}", "" if r.success_rate is None else f"{r.success_rate:.2f}",
             r.gradient) for r in robustness.results]


def protection_summary(report: Any) -> None:
    """The informed audit of the written model, then the protection's trade-off and before/after, its verdict last."""
    protection = report.protection
    if protection is None:
        return
    if protection.chosen_strength is not None:
        leakage_summary(report)
    from ser_audit.report.render.sections import protection_tables

    tradeoff, layers = protection_tables(protection)
    print_table(f"trade-off ({tradeoff.caption})", tradeoff.headers, tradeoff.rows)
    if protection.after:
        print_table(f"{protection.attribute} leakage per layer, before and after ({layers.caption})", layers.headers,
                    layers.rows)
    STDOUT.print(plain(f"protection: {protection.statement}"))


def comparison_summary(report: Any) -> None:
    """``audit --compare-with``: each shared layer's leakage on both models, the layers of one model only, and the
    compared model's robustness (a report with leakage prints them from leakage_summary, before its verdict)."""
    if report.leakage is None:
        _comparison_tables(report)


def _comparison_tables(report: Any) -> None:
    comparison = report.compared
    if comparison is None:
        return
    from ser_audit.report.render.sections import ComparisonNames, comparison_table

    names = ComparisonNames.of(report)
    if comparison.layers:
        table = comparison_table(comparison, names)
        print_table(f"{names.title} ({table.caption})", table.headers, table.rows)
    for name in comparison.only_in_model:
        STDOUT.print(plain(f"only in this model: {name}"))
    for name in comparison.only_in_compared:
        STDOUT.print(plain(f"only in the compared model: {name}"))
    if comparison.robustness is not None:
        print_table(f"robustness of {comparison.model.path} ({comparison.robustness.evaluation_set})",
                    ["method", "eps", "UAR", "accuracy", "success", "gradient"], _robustness_rows(comparison.robustness))
