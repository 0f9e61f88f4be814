"""One decision per layer, and for the model, that every other decision of the report reads.

The family a user decides on is the layer, not the 50-90 near-duplicate rows an audit
writes. So:

1. **Layer test.** A layer's statistic is the largest standardised statistic of its rows,
   ``max_r (L_r - mean(null_r)) / sd(null_r)``, and its null the same maximum under each of
   the audit's shared speaker relabellings (max-T within the layer: the rows' dependence is
   kept). Layers are then adjusted against each other by the step-down max-T of Westfall &
   Young (1993), which controls the family-wise error rate over layers at ``alpha``.
2. **Rows within a layer.** A row's adjusted p-value is the larger of its layer's and its own
   max-T p-value among the layer's rows; a row is significant only inside a significant layer.
3. **Bounds.** Lower bounds L - c·SE hold jointly over every row at 1 - alpha, with c the
   (1 - alpha) quantile of the largest standardised null statistic over every row (max-T on the
   shared relabellings: the rows' dependence is used, and c never exceeds Bonferroni's z); upper
   bounds L + c·SE hold jointly over the layers, c from the smallest, capped by Bonferroni over
   the layers. An upper bound needs no share per row: a layer is private only when *every* one
   of its rows is under the threshold (an intersection-union test). A false ``leaks`` and a
   false ``private`` are different errors, and each kind is held to alpha family-wise.
4. **Verdict.** ``leaks``: the layer is significant and a significant row's lower bound is past
   the threshold T. ``private``: every row's upper bound is under T (certified). Otherwise
   ``inconclusive``, with the smallest leakage the corpus could detect at 80% power and about
   how many speakers would decide. The model leaks if any layer does, is private if every
   layer is, and is inconclusive otherwise. Absence of evidence is never privacy.
5. **Severity.** ``none`` unless significant; then the normalised lower end of the row's 95%
   interval, n = (ci_low - chance) / (1 - chance), graded low < 0.2 <= medium < 0.5 <= high <
   0.8 <= critical, and at least ``low``: a significant row never shows ``none``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import stats

from ser_audit.leakage.attacked import AttackedRow
from ser_audit.leakage.statistics.inference import SpeakerPermutations, distinct_relabellings
from ser_audit.leakage.statistics.multiplicity import (
    benjamini_hochberg,
    exceedance_p,
    simultaneous_critical_value,
    standardised,
    step_down_max_t,
)
from ser_audit.report.model import LayerVerdict, LeakageResult, LeakageVerdict, Recommendation, Verdict
from ser_audit.report.scoring import SEVERITIES, severity

ALPHA = 0.05
POWER = 0.8
# T - chance when no gate sets T: the distance past chance that counts as a leak. It is the margin
# within which findings call two attacks alike; at 0.1 the verdict missed a 0.77 leak on 30 speakers
# in 13% of data sets (benchmarks/calibration.py).
DEFAULT_MARGIN = 0.05
# Beyond this many speakers "speakers needed" stops being a useful figure.
SPEAKERS_OUT_OF_REACH = 100_000


@dataclass(frozen=True)
class _Layer:
    name: str
    index: int | None
    rows: list[int]


def _layers_of(rows: Sequence[LeakageResult]) -> list[_Layer]:
    grouped: dict[str, list[int]] = defaultdict(list)
    for i, row in enumerate(rows):
        grouped[row.layer].append(i)
    layers = [_Layer(name, rows[members[0]].layer_index, members) for name, members in grouped.items()]
    return sorted(layers, key=lambda layer: (layer.index if layer.index is not None else -1, layer.name))


def speakers_for_a_verdict(unit_counts: Sequence[int], alpha: float = ALPHA) -> int | None:
    """The fewest units, in the same class proportions, whose relabellings can reach p < alpha."""
    total = sum(unit_counts)
    if total == 0:
        return None
    for n in range(total, 10 * total + 100):
        counts = [max(1, round(n * k / total)) for k in unit_counts]
        if 1 / distinct_relabellings(counts) < alpha:
            return sum(counts)
    return None


def decide(
    attacked: Sequence[AttackedRow],
    *,
    permutations: SpeakerPermutations,
    threshold: float,
    n_speakers: int | None = None,
    alpha: float = ALPHA,
) -> LeakageVerdict:
    """Adjust every row and decide every layer (see the module docstring); rows are filled in place.

    Args:
        attacked: The audit's rows, each with its statistic, null and standard error.
        permutations: The relabellings the nulls were computed on.
        threshold: T, in the units of L (attacker balanced accuracy).
        n_speakers: Speakers of the audit corpus, for "speakers needed" (default: the relabelled units).
    """
    rows, evidence = [item.row for item in attacked], [item.evidence for item in attacked]
    layers = _layers_of(rows)
    draws = permutations.n
    verdict = LeakageVerdict(
        verdict="inconclusive", statement="", threshold=threshold, alpha=alpha, relabellings=draws,
        relabellings_exact=permutations.exact, distinct_relabellings=permutations.distinct,
        smallest_p_value=permutations.smallest_p_value, decidable=permutations.smallest_p_value < alpha,
    )
    if not verdict.decidable:
        verdict.speakers_for_a_verdict = speakers_for_a_verdict(permutations.unit_counts, alpha)
    if not rows:
        verdict.statement = "nothing was audited"
        return verdict
    z_observed, z_null = standardised(evidence)
    layer_observed = np.array([z_observed[layer.rows].max() for layer in layers])
    layer_null = np.stack([z_null[layer.rows].max(0) for layer in layers])
    layer_p = step_down_max_t(layer_observed, layer_null)
    # A false "leaks" and a false "private" are different errors; each kind is held to alpha family-wise.
    z_low = simultaneous_critical_value(z_null, alpha, hypotheses=len(rows))
    z_high = simultaneous_critical_value(-z_null, alpha, hypotheses=len(layers))
    for row, q in zip(rows, benjamini_hochberg([row.p_value for row in rows])):
        row.q_value = float(q)
    for layer, p_layer, maximum in zip(layers, layer_p, layer_null):
        for i in layer.rows:
            row, item = rows[i], evidence[i]
            exceed = (maximum >= z_observed[i] - 1e-12).sum()
            within = float(exceedance_p(exceed, draws)) if np.isfinite(z_observed[i]) else 1.0
            row.p_value_adjusted = max(float(p_layer), within)
            row.significant = row.p_value_adjusted < alpha
            row.simultaneous_ci_low = float(max(0.0, item.statistic - z_low * item.standard_error))
            row.simultaneous_ci_high = float(min(1.0, item.statistic + z_high * item.standard_error))
            row.severity = severity(row)
        verdict.layers.append(_layer_verdict(layer, [rows[i] for i in layer.rows], float(p_layer), threshold, alpha,
                                             z_low, n_speakers=n_speakers or sum(permutations.unit_counts),
                                             fewest=verdict.speakers_for_a_verdict))
    _conclude(verdict)
    return verdict


def _layer_verdict(layer: _Layer, rows: Sequence[LeakageResult], p_layer: float, threshold: float, alpha: float,
                   z_low: float, *, n_speakers: int, fewest: int | None = None) -> LayerVerdict:
    probe_only = all(row.is_probe for row in rows)
    significant_rows = [row for row in rows if row.significant]
    significant = p_layer < alpha
    lower = max((row.simultaneous_ci_low or row.chance for row in significant_rows), default=rows[0].chance)
    upper = max(row.simultaneous_ci_high if row.simultaneous_ci_high is not None else 1.0 for row in rows)
    if significant_rows:
        headline = max(significant_rows, key=lambda row: (row.simultaneous_ci_low or 0.0, row.balanced_accuracy))
    else:
        headline = max(rows, key=lambda row: (row.simultaneous_ci_high or 1.0, row.balanced_accuracy))
    chance = headline.chance
    verdict: Verdict = "inconclusive"
    if significant and lower > threshold:
        verdict = "leaks"
    elif upper <= threshold:
        verdict = "private"
    # The probe's spread is the smallest a layer's rows have: the most a corpus of this size can resolve.
    spread = min((row.standard_error for row in rows if row.standard_error), default=None)
    detectable = None if spread is None else min(1.0, threshold + (z_low + stats.norm.ppf(POWER)) * spread)
    needed = None
    if verdict == "inconclusive" and spread is not None:
        distance = headline.balanced_accuracy - threshold
        if abs(distance) > 1e-9:
            bound = headline.standard_error or spread
            factor = ((z_low + stats.norm.ppf(POWER)) * bound / abs(distance)) ** 2
            needed = math.ceil(n_speakers * factor) if n_speakers * factor < SPEAKERS_OUT_OF_REACH else None
            if needed is not None:
                # This corpus did not decide, so more speakers than it has, and at least the fewest whose
                # relabellings can reach alpha at all.
                needed = max(needed, n_speakers + 1, fewest or 0)
    attacker = ("linear probe" if headline.is_probe
                else f"{headline.scenario} {headline.attacker_design} ({headline.attacker_kind})")
    figure = (f"L {headline.balanced_accuracy:.3f} [{_fmt(headline.ci_low)}, {_fmt(headline.ci_high)}] by {attacker}, "
              f"layer-level adjusted p {p_layer:.3g}")
    if verdict == "leaks":
        reason = f"leaks: {figure}; its lower bound {lower:.3f} is past the threshold {threshold:.3f}"
    elif verdict == "private":
        reason = (f"private: every row's upper bound is at or under {threshold:.3f} (largest {upper:.3f})"
                  + ("; only the linear probe attacked this layer" if probe_only else ""))
    else:
        shown = "a leak is shown, but its lower bound " f"{lower:.3f} is not past {threshold:.3f}" if significant \
            else "no leak is shown"
        reason = (f"inconclusive: {figure}; {shown}, and the largest upper bound {upper:.3f} is over {threshold:.3f}"
                  + (f"; about {needed} speakers would decide" if needed else ""))
    return LayerVerdict(
        layer=layer.name, layer_index=layer.index, verdict=verdict,
        severity=max((row.severity or "none" for row in rows), key=SEVERITIES.index) if significant else "none",
        headline=headline.key, attacker=attacker, balanced_accuracy=headline.balanced_accuracy,
        ci_low=headline.ci_low, ci_high=headline.ci_high, chance=chance, p_value_adjusted=p_layer,
        significant=significant, lower_bound=lower, upper_bound=upper, rows=len(rows),
        attackers="linear probe only" if probe_only else "every attacker of the run",
        minimum_detectable_leakage=detectable, speakers_needed=needed, reason=reason,
    )


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _conclude(verdict: LeakageVerdict) -> None:
    """The model's verdict and its sentence."""
    layers, threshold = verdict.layers, verdict.threshold
    leaking = [layer for layer in layers if layer.verdict == "leaks"]
    open_layers = [layer for layer in layers if layer.verdict == "inconclusive"]
    if leaking:
        verdict.verdict = "leaks"
        worst = max(leaking, key=lambda layer: (SEVERITIES.index(layer.severity), layer.lower_bound))
        verdict.statement = (
            f"{worst.layer} leaks: L {worst.balanced_accuracy:.3f} [{_fmt(worst.ci_low)}, {_fmt(worst.ci_high)}], "
            f"{worst.severity} (by {worst.attacker}; layer-level adjusted p {worst.p_value_adjusted:.3g}); "
            f"{len(leaking)} of {len(layers)} layers leak past {threshold:.3f}")
    elif not open_layers:
        verdict.verdict = "private"
        probed = [layer.layer for layer in layers if layer.attackers == "linear probe only"]
        verdict.statement = (f"private: every one of the {len(layers)} audited layers stays under {threshold:.3f} "
                             "in every row (certified jointly at 95%)"
                             + (f"; {', '.join(probed)} against the linear probe only" if probed else ""))
    else:
        verdict.verdict = "inconclusive"
        detectable = [layer.minimum_detectable_leakage for layer in open_layers
                      if layer.minimum_detectable_leakage is not None]
        needed = [layer.speakers_needed for layer in open_layers]
        verdict.statement = (
            f"inconclusive: no layer is shown to leak past {threshold:.3f}, and {len(open_layers)} of {len(layers)} "
            "cannot be certified under it"
            + (f"; this corpus detects leakage from about {min(detectable):.3f} at 80% power" if detectable else "")
            + (f"; about {max(n for n in needed if n)} speakers would decide"
               if all(needed) else "; more speakers, or a threshold further from the estimates, would decide"))
    if not verdict.decidable:
        enough = (f"; at least {verdict.speakers_for_a_verdict} speakers in the same proportions could"
                  if verdict.speakers_for_a_verdict else "")
        verdict.statement += (f" (too few speakers for any leak to be shown: the smallest attainable p-value is "
                              f"{verdict.smallest_p_value:.3g}, not under {verdict.alpha}{enough})")


def recommend(verdict: LeakageVerdict, eligible: set[str]) -> Recommendation:
    """The earliest eligible layer that is certified private: the split point for on-device processing."""
    threshold = verdict.threshold
    for layer in verdict.layers:
        if layer.layer in eligible and layer.verdict == "private":
            return Recommendation(
                layer=layer.layer, threshold=threshold,
                reason=f"{layer.layer} is the earliest audited layer certified private: every row's upper bound is at "
                f"or under {threshold:.3f} (largest {layer.upper_bound:.3f}); process up to it on the device and "
                "transmit only its output.",
            )
    return Recommendation(
        layer=None, threshold=threshold,
        reason=f"no audited layer is certified to stay at or under {threshold:.3f} in every row; none is a safe split "
        "point (with few speakers the bounds are wide: audit more speakers to certify one).",
    )
