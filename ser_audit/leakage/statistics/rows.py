"""Leakage statistics of one row: balanced accuracy against 1/C, speaker-level intervals, a p-value.

See ``inference`` for the statistic, the shared permutations and the bootstrap; the
README's Statistics section for the rules built on them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ser_audit.corpus.folds import Fold
from ser_audit.leakage.statistics.inference import (
    SpeakerPermutations,
    balanced_accuracy_of,
    permutation_p_value,
    speaker_bootstrap,
    widened_null,
)
from ser_audit.leakage.statistics.resampling import fixed_null

BOOTSTRAP_METHOD = (
    "speaker bootstrap (n - 1 of each class's n speakers resampled, 999 draws, percentile scaled by t/z, "
    "floored near 0 and 1)"
)


@dataclass(frozen=True)
class Evidence:
    """What the family-wise adjustment needs of a row: its statistic and its null draws.

    ``null[b]`` is the row's statistic under the audit's shared relabelling b.
    """

    statistic: float
    null: np.ndarray
    standard_error: float


@dataclass(frozen=True)
class LeakageStatistics:
    folds: list[float]
    mean: float
    std: float
    accuracy_low: float
    accuracy_high: float
    balanced_accuracy: float
    balanced_folds: list[float]
    ci_low: float
    ci_high: float
    standard_error: float
    interval_method: str
    chance: float
    majority_rate: float
    p_value: float
    p_value_method: str
    p_value_exact: bool
    gap: float
    normalised_leakage: float
    n_test: int
    evidence: Evidence


def training_gaps(labels: np.ndarray, folds: Sequence[Fold]) -> list[str]:
    """Notes for folds whose training side lacks a class that their test side has.

    The attacker of such a fold can never predict that class, so the fold's accuracy says
    more about the split than about the layer; the row carries the note for the reader.
    """
    notes = []
    for k, fold in enumerate(folds):
        missing = sorted(set(labels[fold.test].tolist()) - set(labels[fold.train].tolist()))
        if missing:
            notes.append(
                f"fold {k + 1}: no training utterance labelled {', '.join(map(str, missing))}, which its test "
                "side has; that fold's attacker could never predict it"
            )
    return notes


def leakage_statistics(
    fold_truths: Sequence[np.ndarray],
    fold_predictions: Sequence[np.ndarray],
    *,
    units: np.ndarray,
    classes: np.ndarray,
    null: np.ndarray,
    p_value_method: str,
    exact: bool,
    widen: float = 1.0,
    seed: int = 0,
) -> LeakageStatistics:
    """Statistics over speaker-disjoint folds.

    Args:
        fold_truths, fold_predictions: Held-out labels and predictions per fold.
        units: Resampling unit of each pooled test utterance (its speaker for gender).
        classes: The attribute's classes in the audit corpus; chance is 1 / len(classes).
        null: The statistic under each shared relabelling (see ``resampling``).
        widen: Factor stretching the bootstrap interval of an attacker refitted on the audit
            folds: resampling test speakers under fixed predictions misses how the attacker
            itself varies with its training speakers (``inference.inflation``).
    """
    truth, predicted = np.concatenate(fold_truths), np.concatenate(fold_predictions)
    n_classes = len(classes)
    statistic = balanced_accuracy_of(truth, predicted, classes)
    fold_accuracy = [float(np.mean(t == p)) for t, p in zip(fold_truths, fold_predictions)]
    fold_balanced = [balanced_accuracy_of(t, p, classes) for t, p in zip(fold_truths, fold_predictions)]
    balanced, plain = speaker_bootstrap(truth, predicted, units, classes, seed=seed, widen=widen)
    _, counts = np.unique(truth, return_counts=True)
    chance = 1.0 / n_classes
    method = BOOTSTRAP_METHOD + (f", widened x{widen:.2f} for refitting" if widen > 1.0 else "")
    return LeakageStatistics(
        folds=fold_accuracy,
        mean=float(np.mean(fold_accuracy)),
        std=float(np.std(fold_accuracy, ddof=1)) if len(fold_accuracy) > 1 else 0.0,
        accuracy_low=plain.low,
        accuracy_high=plain.high,
        balanced_accuracy=statistic,
        balanced_folds=fold_balanced,
        ci_low=balanced.low,
        ci_high=balanced.high,
        standard_error=balanced.standard_error,
        interval_method=method,
        chance=chance,
        majority_rate=float(counts.max() / len(truth)),
        p_value=permutation_p_value(statistic, null),
        p_value_method=p_value_method,
        p_value_exact=exact,
        gap=statistic - chance,
        normalised_leakage=(statistic - chance) / (1 - chance) if chance < 1 else 0.0,
        n_test=len(truth),
        evidence=Evidence(statistic, null, balanced.standard_error),
    )


def row_fields(statistics: LeakageStatistics) -> dict:
    """The LeakageResult fields these statistics fill (the rest say who the attacker was)."""
    from ser_audit.report.model import Accuracy

    return dict(
        accuracy=Accuracy(mean=statistics.mean, std=statistics.std, folds=statistics.folds,
                          ci_low=statistics.accuracy_low, ci_high=statistics.accuracy_high),
        balanced_accuracy=statistics.balanced_accuracy, balanced_accuracy_folds=statistics.balanced_folds,
        ci_low=statistics.ci_low, ci_high=statistics.ci_high, standard_error=statistics.standard_error,
        interval_method=statistics.interval_method, chance=statistics.chance, majority_rate=statistics.majority_rate,
        p_value=statistics.p_value, p_value_method=statistics.p_value_method, p_value_exact=statistics.p_value_exact,
        gap=statistics.gap, normalised_leakage=statistics.normalised_leakage, n_test=statistics.n_test,
    )


def fixed_prediction_statistics(
    fold_truths: Sequence[np.ndarray],
    fold_predictions: Sequence[np.ndarray],
    *,
    folds: Sequence[Fold],
    units: np.ndarray,
    permutations: SpeakerPermutations,
    p_value_method: str,
    refitted_widen: float | None = None,
    seed: int = 0,
) -> LeakageStatistics:
    """Statistics of an attacker whose predictions are held fixed under the relabellings.

    Exact for an attacker that never saw the audit labels (``refitted_widen`` None). For one
    refitted on the audit folds, the null and the interval are widened by the probe's ratio
    (``refitted_widen``) and the p-value is approximate (``resampling``).
    """
    null = fixed_null(permutations, folds, fold_predictions)
    widen = 1.0 if refitted_widen is None else refitted_widen
    return leakage_statistics(
        fold_truths, fold_predictions, units=units, classes=permutations.classes,
        null=null if refitted_widen is None else widened_null(null, widen), p_value_method=p_value_method,
        exact=refitted_widen is None, widen=widen, seed=seed,
    )
