"""Multiplicity machinery on the audit's shared speaker relabellings (read by ``verdicts``).

Every row's null comes from the same relabellings, so the maximum of the rows' standardised
null statistics under each relabelling carries the rows' dependence (they share test
utterances and layers): max-T adjustment (Westfall & Young 1993) is then far less blunt than
Bonferroni, and the quantile of that maximum gives simultaneous bounds.

- ``step_down_max_t``: family-wise adjusted p-values, step-down.
- ``simultaneous_critical_value``: the c of jointly valid bounds L -/+ c·SE.
- ``benjamini_hochberg``: false-discovery-rate q-values, reported but decided on by nothing.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import stats

from ser_audit.leakage.statistics.rows import Evidence


def standardised(evidence: Sequence[Evidence]) -> tuple[np.ndarray, np.ndarray]:
    """Observed and null z-scores per row; a row whose null does not vary (one predicted class) gets -inf."""
    nulls = np.stack([e.null for e in evidence])
    centre, spread = nulls.mean(1, keepdims=True), nulls.std(1, keepdims=True)
    varies = spread[:, 0] > 1e-12
    safe = np.where(varies[:, None], spread, 1.0)
    z_null = np.where(varies[:, None], (nulls - centre) / safe, -np.inf)
    z_observed = np.where(varies, (np.array([e.statistic for e in evidence]) - centre[:, 0]) / safe[:, 0], -np.inf)
    return z_observed, z_null


def simultaneous_critical_value(z_null: np.ndarray, alpha: float, *, hypotheses: int) -> float:
    """The c with P(max_r z_r > c) <= alpha under the shared relabellings (max-T), never above Bonferroni's
    z for ``hypotheses`` and never under one row's own z.

    The rows of an audit are strongly dependent (the same layer read by several attackers, neighbouring
    layers), so the quantile of their maximum is well under Bonferroni's bound; bounds L -/+ c·SE then hold
    jointly as long as the estimates move together as their nulls do.
    """
    single, bonferroni = float(stats.norm.ppf(1 - alpha)), float(stats.norm.ppf(1 - alpha / max(1, hypotheses)))
    finite = np.where(np.isfinite(z_null), z_null, -np.inf).max(0)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return bonferroni
    return float(np.clip(np.quantile(finite, 1 - alpha), single, bonferroni))


def exceedance_p(exceed: np.ndarray | int, draws: int) -> np.ndarray:
    """``(1 + #{null >= observed}) / (1 + B)``, element-wise."""
    return (1 + np.asarray(exceed)) / (1 + draws)


def step_down_max_t(observed: np.ndarray, null: np.ndarray) -> np.ndarray:
    """Westfall-Young step-down max-T adjusted p-values of ``observed[h]`` against ``null[h, b]``."""
    order = np.argsort(-observed, kind="stable")
    # successive[j, b]: the largest null statistic among hypotheses ranked j or lower.
    successive = np.maximum.accumulate(null[order][::-1], axis=0)[::-1]
    exceed = (successive >= observed[order][:, None] - 1e-12).sum(1)
    adjusted = np.maximum.accumulate(exceedance_p(exceed, null.shape[1]))
    out = np.empty(len(observed))
    out[order] = np.where(np.isfinite(observed[order]), adjusted, 1.0)
    return out


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
