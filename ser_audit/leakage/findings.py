"""P0's findings, checked on this run's numbers: each gets a verdict and the evidence, whatever it is."""

from __future__ import annotations

from collections import defaultdict
from typing import Sequence

import numpy as np
from scipy import stats

from ser_audit.leakage.scenarios import SAME_ARCHITECTURE_FROZEN
from ser_audit.report.model import Breakdowns, Finding, LeakageResult

CLOSENESS = ("worst", "s1", "s2", "s3", "s4")  # closest attacker first
SIMILAR = 0.05  # generic and aware count as alike when their mean difference is within this


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def generic_versus_aware(rows: Sequence[LeakageResult]) -> Finding:
    claim = "Generic and application-aware attackers leak about the same (P0: worst 0.95 vs 0.95, S1 0.82 vs 0.83)."
    pairs: dict[tuple[str, str, str], dict[str, float]] = defaultdict(dict)
    # A frozen body gives the emotion head no way to shape the attribute head's features: its generic
    # and aware rows are the same attacker by construction, so they prove nothing about the claim.
    identical = sorted({row.layer for row in rows if row.attacker_design == SAME_ARCHITECTURE_FROZEN})
    for row in rows:
        if row.attacker_design != SAME_ARCHITECTURE_FROZEN:
            pairs[(row.layer, row.scenario, row.attacker_design)][row.attacker_kind] = row.balanced_accuracy
    matched = [(p["generic"], p["aware"]) for p in pairs.values() if len(p) == 2]
    left_out = (f"; left out: the frozen same-architecture pairs on {', '.join(identical)}, identical by construction"
                if identical else "")
    if not matched:
        return Finding(name="generic-vs-aware", claim=claim, reproduced=None,
                       evidence="no generic/aware pairs ran" + left_out)
    differences = np.array([a - g for g, a in matched])
    mean_abs = float(np.abs(differences).mean())
    generic, aware = _mean([g for g, _ in matched]), _mean([a for _, a in matched])
    return Finding(
        name="generic-vs-aware", claim=claim, reproduced=mean_abs <= SIMILAR,
        evidence=f"over {len(matched)} pairs: generic {generic:.3f}, aware {aware:.3f}, mean |aware - generic| "
        f"{mean_abs:.3f} (alike if <= {SIMILAR}), largest {differences[np.abs(differences).argmax()]:+.3f}{left_out}",
    )


def scenario_means(rows: Sequence[LeakageResult]) -> dict[str, float]:
    """Mean leakage per scenario over the layers that ran every scenario."""
    by_layer: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        by_layer[row.layer].add(row.scenario)
    present = {s for r in rows for s in [r.scenario] if s in CLOSENESS}
    complete = {layer for layer, scenarios in by_layer.items() if present <= scenarios}
    means = {}
    for scenario in CLOSENESS:
        values = [r.balanced_accuracy for r in rows if r.scenario == scenario and r.layer in complete]
        if values:
            means[scenario] = _mean(values)
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
    tau = float(stats.kendalltau([-CLOSENESS.index(s) for s in order], [means[s] for s in order]).statistic)
    text = ", ".join(f"{s} {means[s]:.3f}" for s in order)
    findings = [Finding(name="closeness", claim=claim, reproduced=tau >= 0.6,
                        evidence=f"mean leakage {text}; Kendall tau with closeness {tau:+.2f} (agrees if >= 0.6)")]
    if {"worst", "s1", "s2"} <= means.keys():
        data_cost, arch_cost = means["worst"] - means["s1"], means["worst"] - means["s2"]
        findings.append(Finding(
            name="architecture-over-data", claim=claim_arch, reproduced=arch_cost > data_cost,
            evidence=f"worst - s2 (architecture) {arch_cost:+.3f} vs worst - s1 (data) {data_cost:+.3f}",
        ))
    else:
        findings.append(Finding(name="architecture-over-data", claim=claim_arch, reproduced=None,
                                evidence="needs worst, s1 and s2"))
    return findings


def depth(probe_rows: Sequence[LeakageResult], rows: Sequence[LeakageResult]) -> Finding:
    claim = "Leakage falls with the depth of the tapped layer but stays above chance."
    curve = sorted((r.layer_index, r.balanced_accuracy, r.ci_low if r.ci_low is not None else r.accuracy.ci_low,
                    r.chance, r.layer) for r in probe_rows if r.layer_index is not None)
    if len(curve) < 3:
        return Finding(name="depth", claim=claim, reproduced=None, evidence="fewer than three layers audited")
    rho = float(stats.spearmanr([c[0] for c in curve], [c[1] for c in curve]).statistic)
    deepest = curve[-1]
    above = deepest[2] > deepest[3]
    scenario_curve: dict[int, list[float]] = defaultdict(list)
    for row in rows:
        if row.layer_index is not None:
            scenario_curve[row.layer_index].append(row.balanced_accuracy)
    extra = ""
    if len(scenario_curve) >= 3:
        xs = sorted(scenario_curve)
        rho_s = float(stats.spearmanr(xs, [_mean(scenario_curve[x]) for x in xs]).statistic)
        extra = f"; scenario attackers' mean per layer: Spearman {rho_s:+.2f}"
    points = ", ".join(f"{c[4]} {c[1]:.3f}" for c in curve)
    return Finding(
        name="depth", claim=claim, reproduced=rho < 0 and above,
        evidence=f"linear probe {points}; Spearman(depth, leakage) {rho:+.2f}; deepest layer's interval "
        f"[{deepest[2]:.3f}, ...] {'above' if above else 'not above'} chance {deepest[3]:.3f}{extra}",
    )


def per_emotion(breakdowns: Breakdowns) -> Finding:
    claim = "Sad and neutral speech leak more than angry and happy speech (P0, S1 generic: angry 0.66, happy 0.86, " \
            "neutral 0.87, sad 0.88)."
    by_group: dict[str, list[float]] = defaultdict(list)
    for row in breakdowns.by_emotion:
        if row.scenario != "probe":
            by_group[row.group].append(row.accuracy)
    if not {"sad", "neutral", "angry", "happy"} <= by_group.keys():
        return Finding(name="per-emotion", claim=claim, reproduced=None,
                       evidence="the corpus lacks one of sad, neutral, angry, happy, or no scenario rows ran")
    means = {group: _mean(values) for group, values in by_group.items()}
    low_arousal, high_arousal = _mean([means["sad"], means["neutral"]]), _mean([means["angry"], means["happy"]])
    text = ", ".join(f"{g} {means[g]:.3f}" for g in sorted(means, key=means.get))  # type: ignore[arg-type]
    return Finding(name="per-emotion", claim=claim, reproduced=low_arousal > high_arousal,
                   evidence=f"mean over scenario rows: {text}; sad+neutral {low_arousal:.3f} vs angry+happy {high_arousal:.3f}")


def spontaneity(breakdowns: Breakdowns) -> Finding:
    claim = "Improvised and scripted speech leak alike (no significant difference)."
    per_row: dict[tuple[str, str, str, str], dict[str, tuple[float, int]]] = defaultdict(dict)
    for row in breakdowns.by_spontaneity:
        if row.scenario != "probe":
            per_row[(row.layer, row.scenario, row.attacker_kind, row.attacker_design)][row.group] = (row.accuracy, row.n)
    pairs = [v for v in per_row.values() if {"improvised", "scripted"} <= v.keys()]
    if not pairs:
        return Finding(name="spontaneity", claim=claim, reproduced=None, evidence="the corpus has no improvised/scripted flag")
    significant = 0
    for pair in pairs:
        (a, n_a), (b, n_b) = pair["improvised"], pair["scripted"]
        pooled = (a * n_a + b * n_b) / (n_a + n_b)
        spread = np.sqrt(max(pooled * (1 - pooled), 1e-12) * (1 / n_a + 1 / n_b))
        if 2 * stats.norm.sf(abs(a - b) / spread) < 0.05:
            significant += 1
    improvised = _mean([p["improvised"][0] for p in pairs])
    scripted = _mean([p["scripted"][0] for p in pairs])
    # At 5% per row, about one row in twenty differs by chance alone.
    expected = max(1, int(np.ceil(0.1 * len(pairs))))
    return Finding(
        name="spontaneity", claim=claim, reproduced=significant <= expected,
        evidence=f"improvised {improvised:.3f} vs scripted {scripted:.3f} over {len(pairs)} rows; {significant} rows differ "
        f"at p < 0.05 (two-proportion z-test; up to {expected} expected by chance)",
    )


def p0_findings(probe_rows: Sequence[LeakageResult], rows: Sequence[LeakageResult], breakdowns: Breakdowns) -> list[Finding]:
    return [generic_versus_aware(rows), *closeness(rows), depth(probe_rows, rows), per_emotion(breakdowns),
            spontaneity(breakdowns)]
