"""Severities, the privacy score and the overall grade, computed from a report's rows.

The leakage L is balanced accuracy against chance 1/C; n(x) = (x - chance) / (1 - chance).

- Severity of a leakage row: ``none`` unless the row is a discovery at a 5% false-discovery
  rate (Benjamini-Hochberg q < 0.05) and its 95% interval stays above chance; otherwise by
  the normalised leakage n(L): ``low`` n < 0.2, ``medium`` n < 0.5, ``high`` n < 0.8,
  ``critical`` n >= 0.8.
- Privacy score: 100 x (1 - mean over audited layers of the layer's worst n(lower bound of
  the 95% interval)), counting only rows significant after family-wise adjustment (the
  others count 0), each clipped to [0, 1]. A model that carries nothing scores 100 unless a
  family-wise false positive occurs (at most 5% of audits). The input-level reference does
  not count (it is the audio, not the model).
- Robustness score: 100 x area under UAR(eps)/UAR(0) over the FGSM grid (``robustness.evaluate``).
- Grade: the lower of the available scores: A >= 85, B >= 70, C >= 55, D >= 40, else F. A
  robustness score from an SPSA gradient estimate is only an upper bound (a black-box estimate
  can only understate vulnerability), so such a report gets no grade.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Sequence

from ser_audit.report.model import LeakageResult, Report, Severity

SEVERITY_STEPS: tuple[tuple[float, Severity], ...] = ((0.2, "low"), (0.5, "medium"), (0.8, "high"))
GRADES = ((85.0, "A"), (70.0, "B"), (55.0, "C"), (40.0, "D"))


def normalised(row: LeakageResult, value: float) -> float:
    return (value - row.chance) / (1 - row.chance) if row.chance < 1 else 0.0


def level(normalised_leakage: float) -> Severity:
    for limit, name in SEVERITY_STEPS:
        if normalised_leakage < limit:
            return name
    return "critical"


def severity(row: LeakageResult) -> Severity:
    discovery = row.q_value if row.q_value is not None else row.p_value
    low = row.ci_low if row.ci_low is not None else row.accuracy.ci_low
    if discovery >= 0.05 or low <= row.chance:
        return "none"
    return level(row.normalised_leakage)


def privacy_score(rows: Sequence[LeakageResult]) -> float | None:
    worst: dict[str, float] = defaultdict(float)
    for row in rows:
        counted = 0.0
        if row.significant and row.ci_low is not None:
            counted = min(1.0, max(0.0, normalised(row, row.ci_low)))
        worst[row.layer] = max(worst[row.layer], counted)
    if not worst:
        return None
    return round(100.0 * (1.0 - sum(worst.values()) / len(worst)), 1)


def grade(*scores: float | None) -> str | None:
    present = [s for s in scores if s is not None]
    if not present:
        return None
    lowest = min(present)
    return next((letter for limit, letter in GRADES if lowest >= limit), "F")


def score(report: Report) -> None:
    """Fill in severities, scores and the grade (in place)."""
    if report.leakage is not None:
        for row in report.leakage.results:
            row.severity = severity(row)
        for reference in report.leakage.references:
            reference.severity = severity(reference)
        report.scores.privacy = privacy_score(report.leakage.results)
    if report.robustness is not None:
        report.scores.robustness = report.robustness.score
        report.scores.robustness_upper_bound = report.robustness.gradient_fallback is not None
    upper_bound = report.scores.robustness_upper_bound and report.scores.robustness is not None
    report.scores.grade = None if upper_bound else grade(report.scores.privacy, report.scores.robustness)
