"""Severities, the privacy score and the overall grade, all read from the leakage verdict.

The leakage L is balanced accuracy against chance 1/C; n(x) = (x - chance) / (1 - chance).
``leakage.verdicts`` decides each layer once (leaks / private / inconclusive); everything here
follows that decision, so severity, gates, score, grade and summary never disagree.

- Severity of a leakage row: ``none`` unless the row is significant (inside a significant
  layer, after multiplicity control); otherwise n(lower end of its 95% interval), graded
  ``low`` n < 0.2, ``medium`` n < 0.5, ``high`` n < 0.8, ``critical`` n >= 0.8, and at least
  ``low``. A layer's severity is its worst row's.
- Privacy score: 100 x (1 - mean over layers of n(lower end of the 95% interval) of the
  layer's headline row, counting only significant layers), each clipped to [0, 1].
- Robustness score: 100 x area under UAR(eps)/UAR(0) over the FGSM grid (``robustness.evaluate``).
- Grade: the lower of the available scores, A >= 85, B >= 70, C >= 55, D >= 40, else F, capped
  by the leakage verdict: A only when every layer is certified private, at best B when the
  verdict is inconclusive, at best C when a layer leaks. A robustness score from an SPSA
  gradient estimate is only an upper bound, so such a report gets no grade.
"""

from __future__ import annotations

from ser_audit.report.model import LeakageResult, LeakageVerdict, Report, Severity

SEVERITY_STEPS: tuple[tuple[float, Severity], ...] = ((0.2, "low"), (0.5, "medium"), (0.8, "high"))
SEVERITIES: tuple[Severity, ...] = ("none", "low", "medium", "high", "critical")
GRADES = ((85.0, "A"), (70.0, "B"), (55.0, "C"), (40.0, "D"))
# The best grade each verdict allows: a grade of A promises certified privacy.
GRADE_CAP = {"private": "A", "inconclusive": "B", "leaks": "C"}
ALPHA = 0.05


def normalised(row: LeakageResult, value: float) -> float:
    return (value - row.chance) / (1 - row.chance) if row.chance < 1 else 0.0


def level(normalised_leakage: float) -> Severity:
    for limit, name in SEVERITY_STEPS:
        if normalised_leakage < limit:
            return name
    return "critical"


def severity(row: LeakageResult) -> Severity:
    """``none`` unless significant; else n(ci_low), at least ``low``. A row outside any family (an input
    reference, which is the audio and not the model) is significant when its own p-value is under 0.05."""
    significant = row.significant if row.significant is not None else row.p_value < ALPHA
    if not significant:
        return "none"
    low = row.ci_low if row.ci_low is not None else row.accuracy.ci_low
    return max(level(max(0.0, normalised(row, low))), "low", key=SEVERITIES.index)


def privacy_score(verdict: LeakageVerdict) -> float | None:
    if not verdict.layers:
        return None
    counted = [min(1.0, max(0.0, (layer.ci_low - layer.chance) / (1 - layer.chance)))
               if layer.significant and layer.ci_low is not None and layer.chance < 1 else 0.0
               for layer in verdict.layers]
    return round(100.0 * (1.0 - sum(counted) / len(counted)), 1)


def grade(*scores: float | None, cap: str = "A") -> str | None:
    present = [s for s in scores if s is not None]
    if not present:
        return None
    lowest = min(present)
    letter = next((letter for limit, letter in GRADES if lowest >= limit), "F")
    return max(letter, cap)  # letters sort best first


def score(report: Report) -> None:
    """Fill in the input references' severities, the scores and the grade (in place); the rows' severities
    come with the verdict (``leakage.verdicts.decide``)."""
    cap = "A"
    if report.leakage is not None:
        for row in report.leakage.results:
            row.severity = severity(row)
        for reference in report.leakage.references:
            reference.severity = severity(reference)
        if report.leakage.verdict is not None:
            report.scores.privacy = privacy_score(report.leakage.verdict)
            cap = GRADE_CAP[report.leakage.verdict.verdict]
    if report.robustness is not None:
        report.scores.robustness = report.robustness.score
        report.scores.robustness_upper_bound = report.robustness.gradient_fallback is not None
    upper_bound = report.scores.robustness_upper_bound and report.scores.robustness is not None
    report.scores.grade = None if upper_bound else grade(report.scores.privacy, report.scores.robustness, cap=cap)
