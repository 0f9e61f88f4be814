"""Leakage statistics: accuracy over folds, an interval, chance, and a p-value against chance."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
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


def leakage_statistics(
    fold_truths: list[np.ndarray],
    fold_predictions: list[np.ndarray],
    *,
    interval: tuple[float, float],
    p_value: float,
) -> LeakageStatistics:
    """Statistics over speaker-disjoint folds.

    Accuracy mean and std (sample std, ddof=1) are over folds; balanced accuracy is over all
    test predictions. The interval and p-value come from ``resampling`` (they refit attackers).
    Chance is the majority rate of the pooled test labels.
    """
    fold_accuracy = [float(np.mean(t == p)) for t, p in zip(fold_truths, fold_predictions)]
    truth = np.concatenate(fold_truths)
    predicted = np.concatenate(fold_predictions)
    n_test = len(truth)
    _, counts = np.unique(truth, return_counts=True)
    chance = float(counts.max() / n_test)
    mean = float(np.mean(fold_accuracy))
    low, high = interval
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
