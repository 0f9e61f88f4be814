"""Leakage statistics: accuracy over folds, an interval, chance, and a p-value against chance."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats
from sklearn.metrics import balanced_accuracy_score


@dataclass(frozen=True)
class LeakageStatistics:
    folds: list[float]
    mean: float
    std: float
    ci_low: float
    ci_high: float
    chance: float
    p_value: float
    balanced_accuracy: float
    gap: float
    normalised_leakage: float
    n_test: int


def training_gaps(labels: np.ndarray, folds) -> list[str]:
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


def wilson_interval(correct: int, total: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (well behaved near 0 and 1)."""
    z = stats.norm.ppf(0.5 + confidence / 2)
    p = correct / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * np.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return float(centre - half), float(centre + half)


def corrected_fold_interval(
    fold_accuracy: list[float], n_train: int, n_test: int, confidence: float = 0.95
) -> tuple[float, float]:
    """Nadeau & Bengio's corrected resampled t interval over fold accuracies.

    The folds' training sets overlap, so the fold accuracies are positively correlated and
    their plain standard error is too small; the variance is inflated from 1/k to
    1/k + n_test/n_train (Nadeau & Bengio, Machine Learning 52, 2003).
    """
    k = len(fold_accuracy)
    mean = float(np.mean(fold_accuracy))
    if k < 2:
        return mean, mean
    spread = float(np.std(fold_accuracy, ddof=1)) * np.sqrt(1.0 / k + n_test / n_train)
    half = float(stats.t.ppf(0.5 + confidence / 2, df=k - 1)) * spread
    return mean - half, mean + half


def leakage_statistics(
    fold_truths: list[np.ndarray],
    fold_predictions: list[np.ndarray],
    *,
    n_train: int,
    p_value: float,
) -> LeakageStatistics:
    """Statistics over speaker-disjoint folds.

    Accuracy mean and std (sample std, ddof=1) are over folds; balanced accuracy is over all
    test predictions. The 95% interval is the union of the corrected resampled t interval over
    folds (which accounts for the folds' shared training data) and the Wilson interval over all
    test predictions (which keeps a floor of width when every fold scores alike), clipped to
    [0, 1]. The p-value comes from ``resampling``. Chance is the majority rate of the pooled
    test labels.
    """
    fold_accuracy = [float(np.mean(t == p)) for t, p in zip(fold_truths, fold_predictions)]
    truth = np.concatenate(fold_truths)
    predicted = np.concatenate(fold_predictions)
    n_test = len(truth)
    _, counts = np.unique(truth, return_counts=True)
    chance = float(counts.max() / n_test)
    mean = float(np.mean(fold_accuracy))
    fold_low, fold_high = corrected_fold_interval(fold_accuracy, n_train, n_test // max(1, len(fold_accuracy)))
    pooled_low, pooled_high = wilson_interval(int(np.sum(truth == predicted)), n_test)
    low, high = max(0.0, min(fold_low, pooled_low)), min(1.0, max(fold_high, pooled_high))
    return LeakageStatistics(
        folds=fold_accuracy,
        mean=mean,
        std=float(np.std(fold_accuracy, ddof=1)) if len(fold_accuracy) > 1 else 0.0,
        ci_low=low,
        ci_high=high,
        chance=chance,
        p_value=p_value,
        balanced_accuracy=float(balanced_accuracy_score(truth, predicted)),
        gap=mean - chance,
        normalised_leakage=(mean - chance) / (1 - chance) if chance < 1 else 0.0,
        n_test=n_test,
    )
