"""Gates: thresholds a CI job enforces through the exit code.

A leakage gate fails only on evidence that survives multiplicity control: a row whose
family-wise adjusted p-value is under 0.05 *and* whose simultaneous lower bound is past the
threshold. A model whose layers carry nothing therefore fails a gate in at most 5% of
audits, however many rows the audit has. The CLI's flags are policy rules (``policy.flag_policy``),
so one engine (``policy.evaluate``) decides every gate.
"""

from __future__ import annotations

from typing import Callable, Sequence

from ser_audit.report.model import Gate, LeakageResult

ALPHA = 0.05


def leakage_bound(row: LeakageResult) -> float:
    """The value a gate compares: the simultaneous lower bound of L where the row is significant after
    family-wise adjustment; chance otherwise (no evidence of any leak)."""
    if row.significant and row.simultaneous_ci_low is not None:
        return max(row.chance, row.simultaneous_ci_low)
    if row.significant is None:  # a report older than schema 1.2: its point estimate
        return row.accuracy.mean
    return row.chance


def worst_row(rows: Sequence[LeakageResult], measure: Callable[[LeakageResult], float]) -> LeakageResult:
    return max(rows, key=lambda row: (measure(row), row.balanced_accuracy))


def describe(row: LeakageResult) -> str:
    adjusted = f", adjusted p {row.p_value_adjusted:.3g}" if row.p_value_adjusted is not None else ""
    bounds = (f", joint bounds [{row.simultaneous_ci_low:.3f}, {row.simultaneous_ci_high:.3f}]"
              if row.simultaneous_ci_low is not None and row.simultaneous_ci_high is not None else "")
    return f"{row.key}: L {row.balanced_accuracy:.3f}{bounds}{adjusted}"


def max_leakage_gate(name: str, rows: Sequence[LeakageResult], threshold: float) -> Gate:
    worst = worst_row(rows, leakage_bound)
    value = leakage_bound(worst)
    return Gate(name=name, threshold=threshold, value=value, passed=value <= threshold, detail=describe(worst))


def max_gap_gate(name: str, rows: Sequence[LeakageResult], threshold: float) -> Gate:
    worst = worst_row(rows, lambda row: leakage_bound(row) - row.chance)
    value = leakage_bound(worst) - worst.chance
    return Gate(name=name, threshold=threshold, value=value, passed=value <= threshold, detail=describe(worst))
