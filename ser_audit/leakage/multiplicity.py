"""Decisions over many rows at once, with multiplicity control.

An audit tests every layer with many attackers; the largest of 60-80 raw estimates sits above
chance on a model that carries nothing. So each row also gets:

- ``p_value_adjusted``: family-wise, single-step max-T (Westfall & Young 1993). Every row's
  null comes from the same speaker relabellings, so the maximum of the rows' standardised
  null statistics under each relabelling carries the rows' dependence (they share test
  utterances) and the adjustment is not as blunt as Bonferroni. Gates use it.
- ``q_value``: Benjamini-Hochberg false-discovery-rate q-value. Severities use it.
- ``simultaneous_ci_low/high``: Bonferroni intervals at 95% jointly over all rows, from the
  row's speaker-level standard error. Gates compare the lower end with their threshold; the
  split-point recommendation compares the upper end.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import stats

from ser_audit.leakage.stats import Evidence
from ser_audit.report.model import LeakageResult

ALPHA = 0.05


def max_t_adjusted(evidence: Sequence[Evidence]) -> np.ndarray:
    """Single-step max-T adjusted p-values: ``(1 + #{b: max_r z_r[b] >= z_r}) / (1 + B)``.

    A row whose null does not vary (an attacker that predicts one class) cannot be significant
    and does not enter the maximum.
    """
    if not evidence:
        return np.empty(0)
    nulls = np.stack([e.null for e in evidence])  # [rows, B]
    centre, spread = nulls.mean(1, keepdims=True), nulls.std(1, keepdims=True)
    varies = spread[:, 0] > 1e-12
    safe = np.where(spread > 1e-12, spread, 1.0)
    z_null = np.where(varies[:, None], (nulls - centre) / safe, -np.inf)
    z_observed = np.where(varies, (np.array([e.statistic for e in evidence]) - centre[:, 0]) / safe[:, 0], -np.inf)
    maximum = z_null.max(0)  # [B]
    exceed = (maximum[None, :] >= z_observed[:, None] - 1e-12).sum(1)
    return np.where(varies, (1 + exceed) / (1 + nulls.shape[1]), 1.0)


def benjamini_hochberg(p_values: Sequence[float]) -> np.ndarray:
    """BH q-values: the smallest false-discovery rate at which each hypothesis is rejected."""
    p = np.asarray(p_values, dtype=float)
    m = len(p)
    if m == 0:
        return p
    order = np.argsort(p)
    scaled = p[order] * m / np.arange(1, m + 1)
    q = np.minimum.accumulate(scaled[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(q, 1.0)
    return out


def adjust(rows: Sequence[LeakageResult], evidence: Sequence[Evidence], *, alpha: float = ALPHA) -> None:
    """Fill each row's adjusted p-value, q-value, significance and simultaneous interval (in place)."""
    assert len(rows) == len(evidence)
    if not rows:
        return
    adjusted = max_t_adjusted(evidence)
    q_values = benjamini_hochberg([row.p_value for row in rows])
    z = float(stats.norm.ppf(1 - alpha / (2 * len(rows))))
    for row, item, p_adjusted, q in zip(rows, evidence, adjusted, q_values):
        row.p_value_adjusted = float(p_adjusted)
        row.q_value = float(q)
        row.significant = bool(p_adjusted < alpha)
        row.simultaneous_ci_low = float(max(0.0, item.statistic - z * item.standard_error))
        row.simultaneous_ci_high = float(min(1.0, item.statistic + z * item.standard_error))
