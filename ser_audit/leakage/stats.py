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


def speaker_bootstrap_interval(
    correct: np.ndarray, speakers: np.ndarray, *, confidence: float = 0.95, repeats: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """Percentile interval of pooled accuracy, resampling held-out speakers with replacement.

    Predictions of one speaker are not independent (the attacker errs on a speaker, not on
    an utterance), so speakers, not utterances, are the units resampled.
    """
    labels, index = np.unique(speakers, return_inverse=True)
    hits = np.bincount(index, weights=correct.astype(float), minlength=len(labels))
    counts = np.bincount(index, minlength=len(labels)).astype(float)
    draws = np.random.default_rng(seed).integers(0, len(labels), size=(repeats, len(labels)))
    accuracies = hits[draws].sum(1) / counts[draws].sum(1)
    tail = (1 - confidence) / 2 * 100
    return float(np.percentile(accuracies, tail)), float(np.percentile(accuracies, 100 - tail))


def speaker_p_value(correct: np.ndarray, speakers: np.ndarray, chance: float) -> float:
    """One-sided t-test of per-speaker accuracies against chance (speakers are the independent units)."""
    labels, index = np.unique(speakers, return_inverse=True)
    per_speaker = np.bincount(index, weights=correct.astype(float)) / np.bincount(index)
    if len(per_speaker) < 2 or np.allclose(per_speaker, per_speaker[0]):
        return 0.0 if per_speaker.mean() > chance else 1.0
    return float(stats.ttest_1samp(per_speaker, chance, alternative="greater").pvalue)


def leakage_statistics(
    fold_truths: list[np.ndarray], fold_predictions: list[np.ndarray], fold_speakers: list[np.ndarray], *, seed: int = 0
) -> LeakageStatistics:
    """Statistics over speaker-disjoint folds.

    Accuracy mean and std (sample std, ddof=1) are over folds. The 95% interval resamples the
    held-out speakers of all folds (cluster bootstrap over all test predictions); the one-sided
    p-value tests per-speaker accuracy against chance. Chance is the majority rate of the pooled
    test labels; balanced accuracy is over all test predictions.
    """
    fold_accuracy = [float(np.mean(t == p)) for t, p in zip(fold_truths, fold_predictions)]
    truth = np.concatenate(fold_truths)
    predicted = np.concatenate(fold_predictions)
    speakers = np.concatenate(fold_speakers)
    correct = truth == predicted
    n_test = len(truth)
    _, counts = np.unique(truth, return_counts=True)
    chance = float(counts.max() / n_test)
    low, high = speaker_bootstrap_interval(correct, speakers, seed=seed)
    mean = float(np.mean(fold_accuracy))
    return LeakageStatistics(
        folds=fold_accuracy,
        mean=mean,
        std=float(np.std(fold_accuracy, ddof=1)) if len(fold_accuracy) > 1 else 0.0,
        ci_low=low,
        ci_high=high,
        chance=chance,
        p_value=speaker_p_value(correct, speakers, chance),
        balanced_accuracy=float(balanced_accuracy_score(truth, predicted)),
        gap=mean - chance,
        normalised_leakage=(mean - chance) / (1 - chance) if chance < 1 else 0.0,
        n_test=n_test,
    )
