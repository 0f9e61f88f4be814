"""P0's findings, checked on this run's numbers: each gets a verdict and the evidence, whatever it is.

Every comparison is a difference of leakage with a speaker-level interval. A row's standard
error comes from its speaker bootstrap (``stats``); a breakdown group's from its speaker-level
interval. Differences take the two sides as independent and means over rows take their
errors as perfectly correlated; both make intervals wider than the truth, never narrower,
whatever the unknown correlations. Verdicts:

- "higher"/"lower" claims hold when the 95% interval of the difference excludes 0, fail when
  it excludes 0 on the other side, and stay undecided (``reproduced`` null) otherwise;
- "alike" claims (generic vs aware, improvised vs scripted) hold when the 90% interval lies
  within +-``EQUIVALENCE`` (two one-sided tests at 5%), fail when the 95% interval excludes 0,
  and stay undecided otherwise.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import stats

from ser_audit.leakage.scenarios.table import SAME_ARCHITECTURE_FROZEN
from ser_audit.report.model import BreakdownRow, Breakdowns, Finding, LeakageResult

CLOSENESS = ("worst", "s1", "s2", "s3", "s4")  # closest attacker first
EQUIVALENCE = 0.05  # balanced-accuracy margin within which two kinds of attack count as alike
Z95, Z90 = float(stats.norm.ppf(0.975)), float(stats.norm.ppf(0.95))


@dataclass(frozen=True)
class Estimate:
    value: float
    error: float  # standard error

    def minus(self, other: "Estimate") -> "Estimate":
        return Estimate(self.value - other.value, float(np.hypot(self.error, other.error)))

    def text(self) -> str:
        return f"{self.value:+.3f} [{self.value - Z95 * self.error:+.3f}, {self.value + Z95 * self.error:+.3f}]"


def mean_of(estimates: Sequence[Estimate]) -> Estimate:
    """Mean of estimates, its error the mean of theirs (exact if they are perfectly correlated, wider otherwise)."""
    return Estimate(float(np.mean([e.value for e in estimates])), float(np.mean([e.error for e in estimates])))


def of_row(row: LeakageResult) -> Estimate:
    error = row.standard_error if row.standard_error is not None else (row.accuracy.ci_high - row.accuracy.ci_low) / (2 * Z95)
    return Estimate(row.balanced_accuracy, error)


def of_group(row: BreakdownRow) -> Estimate:
    return Estimate(row.accuracy, (row.ci_high - row.ci_low) / (2 * Z95))


def higher(difference: Estimate) -> bool | None:
    if difference.value - Z95 * difference.error > 0:
        return True
    if difference.value + Z95 * difference.error < 0:
        return False
    return None


def alike(difference: Estimate) -> bool | None:
    if abs(difference.value) + Z90 * difference.error < EQUIVALENCE:
        return True
    if abs(difference.value) - Z95 * difference.error > 0:
        return False
    return None


def generic_versus_aware(rows: Sequence[LeakageResult]) -> Finding:
    claim = "Generic and application-aware attackers leak about the same (P0: worst 0.95 vs 0.95, S1 0.82 vs 0.83)."
    pairs: dict[tuple[str, str, str], dict[str, LeakageResult]] = defaultdict(dict)
    # A frozen body gives the emotion head no way to shape the attribute head's features: its generic
    # and aware rows are the same attacker by construction, so they prove nothing about the claim.
    identical = sorted({row.layer for row in rows if row.attacker_design == SAME_ARCHITECTURE_FROZEN})
    for row in rows:
        if row.attacker_design != SAME_ARCHITECTURE_FROZEN:
            pairs[(row.layer, row.scenario, row.attacker_design)][row.attacker_kind] = row
    matched = [p for p in pairs.values() if len(p) == 2]
    left_out = (f"; left out: the frozen same-architecture pairs on {', '.join(identical)}, identical by construction"
                if identical else "")
    if not matched:
        return Finding(name="generic-vs-aware", claim=claim, reproduced=None,
                       evidence="no generic/aware pairs ran" + left_out)
    difference = mean_of([of_row(p["aware"]).minus(of_row(p["generic"])) for p in matched])
    generic = np.mean([p["generic"].balanced_accuracy for p in matched])
    aware = np.mean([p["aware"].balanced_accuracy for p in matched])
    return Finding(
        name="generic-vs-aware", claim=claim, reproduced=alike(difference),
        evidence=f"over {len(matched)} pairs: generic {generic:.3f}, aware {aware:.3f}; aware - generic "
        f"{difference.text()} (alike if the 90% interval stays within +-{EQUIVALENCE}){left_out}",
    )


def scenario_means(rows: Sequence[LeakageResult]) -> dict[str, Estimate]:
    """Mean leakage per scenario over the layers that ran every scenario (its attackers, not the probe or the
    nested choice)."""
    rows = [row for row in rows if row.is_scenario_attacker]
    by_layer: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        by_layer[row.layer].add(row.scenario)
    present = {r.scenario for r in rows if r.scenario in CLOSENESS}
    complete = {layer for layer, scenarios in by_layer.items() if present <= scenarios}
    means = {}
    for scenario in CLOSENESS:
        picked = [of_row(r) for r in rows if r.scenario == scenario and r.layer in complete]
        if picked:
            means[scenario] = mean_of(picked)
    return means


def closeness(rows: Sequence[LeakageResult]) -> list[Finding]:
    claim = "The closer the attacker is to the target, the higher the leakage (P0: worst 0.95 > S1 0.82 > S2/S3 > S4 0.52)."
    claim_arch = "Architecture matters more than training data: a new architecture (S2) costs more than new data (S1)."
    means = scenario_means(rows)
    if len(means) < 3:
        missing = "fewer than three scenarios ran on the same layers"
        return [Finding(name="closeness", claim=claim, reproduced=None, evidence=missing),
                Finding(name="architecture-over-data", claim=claim_arch, reproduced=None, evidence=missing)]
    order = [s for s in CLOSENESS if s in means]
    tau = float(stats.kendalltau([-CLOSENESS.index(s) for s in order], [means[s].value for s in order]).statistic)
    text = ", ".join(f"{s} {means[s].value:.3f} ± {Z95 * means[s].error:.3f}" for s in order)
    span = means[order[0]].minus(means[order[-1]])
    verdict = higher(span) if tau >= 0.6 else (False if tau <= 0 else None)
    findings = [Finding(
        name="closeness", claim=claim, reproduced=verdict,
        evidence=f"mean leakage {text}; Kendall tau with closeness {tau:+.2f}; {order[0]} - {order[-1]} {span.text()} "
        "(agrees if tau >= 0.6 and that difference is above 0)",
    )]
    if {"worst", "s1", "s2"} <= means.keys():
        # (worst - s2) - (worst - s1) = s1 - s2: the architecture costs more than the data when s1 > s2.
        difference = means["s1"].minus(means["s2"])
        findings.append(Finding(
            name="architecture-over-data", claim=claim_arch, reproduced=higher(difference),
            evidence=f"worst - s2 (architecture) {means['worst'].value - means['s2'].value:+.3f} vs worst - s1 (data) "
            f"{means['worst'].value - means['s1'].value:+.3f}; their difference s1 - s2 {difference.text()}",
        ))
    else:
        findings.append(Finding(name="architecture-over-data", claim=claim_arch, reproduced=None,
                                evidence="needs worst, s1 and s2"))
    return findings


def depth(probe_rows: Sequence[LeakageResult]) -> Finding:
    claim = "Leakage falls with the depth of the tapped layer but stays above chance."
    curve = sorted((r for r in probe_rows if r.layer_index is not None), key=lambda r: r.layer_index or 0)
    if len(curve) < 3:
        return Finding(name="depth", claim=claim, reproduced=None, evidence="fewer than three layers audited")
    leakage = [r.balanced_accuracy for r in curve]
    # A flat curve (every layer at chance on silence, or every one at 1.0) has no rank correlation.
    flat = max(leakage) == min(leakage)
    rho = float("nan") if flat else float(stats.spearmanr([r.layer_index for r in curve], leakage).statistic)
    first, deepest = curve[0], curve[-1]
    fall = of_row(first).minus(of_row(deepest))
    low = deepest.ci_low if deepest.ci_low is not None else deepest.accuracy.ci_low
    above = low > deepest.chance
    falls = higher(fall)
    verdict = None if falls is None else (falls and above)
    points = ", ".join(f"{r.layer} {r.balanced_accuracy:.3f}" for r in curve)
    return Finding(
        name="depth", claim=claim, reproduced=verdict,
        evidence=f"linear probe {points}; Spearman(depth, leakage) {'undefined (a flat curve)' if flat else f'{rho:+.2f}'}; "
        f"{first.layer} - {deepest.layer} "
        f"{fall.text()}; deepest layer's interval [{low:.3f}, ...] {'above' if above else 'not above'} chance "
        f"{deepest.chance:.3f}",
    )


def per_emotion(breakdowns: Breakdowns) -> Finding:
    claim = "Sad and neutral speech leak more than angry and happy speech (P0, S1 generic: angry 0.66, happy 0.86, " \
            "neutral 0.87, sad 0.88)."
    by_group: dict[str, list[Estimate]] = defaultdict(list)
    for row in breakdowns.by_emotion:
        if row.is_scenario_attacker:
            by_group[row.group].append(of_group(row))
    if not {"sad", "neutral", "angry", "happy"} <= by_group.keys():
        return Finding(name="per-emotion", claim=claim, reproduced=None,
                       evidence="the corpus lacks one of sad, neutral, angry, happy, or no scenario rows ran")
    means = {group: mean_of(values) for group, values in by_group.items()}
    low_arousal = mean_of([means["sad"], means["neutral"]])
    difference = low_arousal.minus(mean_of([means["angry"], means["happy"]]))
    text = ", ".join(f"{g} {means[g].value:.3f}" for g in sorted(means, key=lambda g: means[g].value))
    return Finding(name="per-emotion", claim=claim, reproduced=higher(difference),
                   evidence=f"mean over scenario rows: {text}; (sad+neutral) - (angry+happy) {difference.text()}")


def spontaneity(breakdowns: Breakdowns) -> Finding:
    claim = "Improvised and scripted speech leak alike (no significant difference)."
    per_row: dict[tuple[str, str, str, str], dict[str, BreakdownRow]] = defaultdict(dict)
    for row in breakdowns.by_spontaneity:
        if row.is_scenario_attacker:
            per_row[(row.layer, row.scenario, row.attacker_kind, row.attacker_design)][row.group] = row
    pairs = [v for v in per_row.values() if {"improvised", "scripted"} <= v.keys()]
    if not pairs:
        return Finding(name="spontaneity", claim=claim, reproduced=None, evidence="the corpus has no improvised/scripted flag")
    difference = mean_of([of_group(p["improvised"]).minus(of_group(p["scripted"])) for p in pairs])
    improvised = np.mean([p["improvised"].accuracy for p in pairs])
    scripted = np.mean([p["scripted"].accuracy for p in pairs])
    return Finding(
        name="spontaneity", claim=claim, reproduced=alike(difference),
        evidence=f"improvised {improvised:.3f} vs scripted {scripted:.3f} over {len(pairs)} rows; improvised - scripted "
        f"{difference.text()} (alike if the 90% interval stays within +-{EQUIVALENCE})",
    )


def p0_findings(probe_rows: Sequence[LeakageResult], rows: Sequence[LeakageResult], breakdowns: Breakdowns) -> list[Finding]:
    return [generic_versus_aware(rows), *closeness(rows), depth(probe_rows), per_emotion(breakdowns),
            spontaneity(breakdowns)]
