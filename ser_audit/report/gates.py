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


def robustness_gates(report: Report, *, min_robust_uar: float | None = None, at_eps: float | None = None) -> list[Gate]:
    """``--min-robust-uar X --at-eps E``: the FGSM UAR at eps E must be at least X."""
    if min_robust_uar is None:
        return []
    from ser_audit.errors import ConfigError

    rows = [r for r in (report.robustness.results if report.robustness else []) if r.method == "fgsm"]
    eps = at_eps if at_eps is not None else max((r.eps for r in rows), default=0.0)
    matching = [r for r in rows if abs(r.eps - eps) < 1e-9]
    if not matching:
        raise ConfigError(f"--at-eps {eps} is not on the FGSM grid ({', '.join(str(r.eps) for r in rows)})")
    row = matching[0]
    return [Gate(name="min-robust-uar", threshold=min_robust_uar, value=row.uar, passed=row.uar >= min_robust_uar,
                 detail=f"fgsm eps {eps} ({row.domain})")]
