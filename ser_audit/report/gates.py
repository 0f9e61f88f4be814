"""Gates: thresholds a CI job enforces through the exit code."""

from __future__ import annotations

from ser_audit.report.model import Gate, Report


def leakage_gates(report: Report, *, max_leakage: float | None = None, max_gap: float | None = None) -> list[Gate]:
    """One gate per given threshold, measured on the worst (most leaking) result row."""
    gates: list[Gate] = []
    rows = report.leakage.results if report.leakage else []
    if not rows:
        return gates
    if max_leakage is not None:
        worst = max(rows, key=lambda row: row.accuracy.mean)
        gates.append(
            Gate(
                name="max-leakage", threshold=max_leakage, value=worst.accuracy.mean,
                passed=worst.accuracy.mean <= max_leakage,
                detail=f"{worst.layer} / {worst.scenario} / {worst.attacker_kind} / {worst.attacker_architecture}",
            )
        )
    if max_gap is not None:
        worst = max(rows, key=lambda row: row.gap)
        gates.append(
            Gate(
                name="max-gap", threshold=max_gap, value=worst.gap, passed=worst.gap <= max_gap,
                detail=f"{worst.layer} / {worst.scenario} / {worst.attacker_kind} / {worst.attacker_architecture}",
            )
        )
    return gates
