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


def wilson_interval(correct: int, total: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (well behaved near 0 and 1)."""
    if total == 0:
        return 0.0, 1.0
    z = stats.norm.ppf(0.5 + confidence / 2)
    p = correct / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * np.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def leakage_statistics(fold_truths: list[np.ndarray], fold_predictions: list[np.ndarray]) -> LeakageStatistics:
    """Statistics over speaker-disjoint folds.

    Accuracy mean and std (sample std, ddof=1) are over folds; the 95% Wilson interval,
    the one-sided binomial p-value against chance and the balanced accuracy are over all
    test predictions pooled. Chance is the majority rate of the pooled test labels.
    """
    fold_accuracy = [float(np.mean(t == p)) for t, p in zip(fold_truths, fold_predictions)]
    truth = np.concatenate(fold_truths)
    predicted = np.concatenate(fold_predictions)
    correct = int(np.sum(truth == predicted))
    n_test = len(truth)
    _, counts = np.unique(truth, return_counts=True)
    chance = float(counts.max() / n_test)
    low, high = wilson_interval(correct, n_test)
    p_value = float(stats.binomtest(correct, n_test, chance, alternative="greater").pvalue)
    mean = float(np.mean(fold_accuracy))
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
