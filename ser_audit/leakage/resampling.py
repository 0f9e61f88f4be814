"""A permutation p-value for cross-validated attacker accuracy, rerunning the whole cross-validation.

Cross-validated accuracies of one data set are not binomial: the folds' attackers share
most of their training data, so their errors are correlated, and a binomial test rejects
too often (about 12% of the time at a nominal 5% in our null calibration runs). Relabelling
and refitting gives the exact null distribution instead; the linear probe refits in closed
form (``LinearProbe.permuted_predictions``), so 999 relabellings cost a few matrix products.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ser_audit.corpus.folds import Fold
from ser_audit.leakage.attackers.linear import LinearProbe

DEFAULT_PERMUTATIONS = 999


def permutation_p_value(
    probe: LinearProbe,
    features: np.ndarray,
    labels: np.ndarray,
    speakers: np.ndarray,
    folds: Sequence[Fold],
    observed: float,
    *,
    n_permutations: int = DEFAULT_PERMUTATIONS,
    seed: int = 0,
) -> float:
    """One-sided p-value of the mean fold accuracy ``observed`` against relabelled data.

    When the attribute is constant within each speaker (gender), whole speakers swap labels,
    keeping each speaker's utterances together as the null requires; otherwise utterances do.
    Returns ``(1 + #{permuted >= observed}) / (1 + n_permutations)``.
    """
    classes, label_index = np.unique(labels, return_inverse=True)
    speaker_ids, speaker_of = np.unique(speakers, return_inverse=True)
    rng = np.random.default_rng(seed)
    per_speaker = np.zeros(len(speaker_ids), dtype=int)
    per_speaker[speaker_of] = label_index
    if np.array_equal(per_speaker[speaker_of], label_index):
        relabelled = rng.permuted(np.tile(per_speaker, (n_permutations, 1)), axis=1)[:, speaker_of]
    else:
        relabelled = rng.permuted(np.tile(label_index, (n_permutations, 1)), axis=1)
    fold_accuracy = np.empty((n_permutations, len(folds)))
    for column, fold in enumerate(folds):
        predicted = probe.permuted_predictions(features[fold.train], features[fold.test], relabelled[:, fold.train], classes)
        fold_accuracy[:, column] = (predicted == classes[relabelled[:, fold.test]]).mean(1)
    statistic = fold_accuracy.mean(1)
    return float((1 + np.sum(statistic >= observed - 1e-12)) / (1 + n_permutations))


def fixed_prediction_p_value(
    truths: np.ndarray,
    predictions: np.ndarray,
    speakers: np.ndarray,
    fold_of: np.ndarray,
    observed: float,
    *,
    n_permutations: int = DEFAULT_PERMUTATIONS,
    seed: int = 0,
) -> float:
    """One-sided p-value for attackers too costly to refit: the predictions stay, the labels move.

    Under the null the attacker's predictions carry nothing about the attribute, so any
    reassignment of the attribute among the audit corpus's speakers (whole speakers, as it is
    constant within one) is as likely as the real one. Each speaker keeps its utterances and
    its fold, so the clustering of predictions within a speaker is kept in the null. This tests
    the fitted attackers, not their training procedure: for attackers trained on the aux corpus
    that is the whole question; for attackers refitted per fold it ignores that the training
    labels move too, which can only make the test conservative (a refitted attacker under the
    null anti-learns the held-out speaker's class).

    Args:
        truths: Attribute of every test utterance (pooled over folds).
        predictions: The attackers' predictions, aligned with ``truths``.
        speakers: Speaker of each test utterance.
        fold_of: Fold index of each test utterance; the statistic is the mean fold accuracy.
        observed: The observed mean fold accuracy.
    """
    classes, label_index = np.unique(truths, return_inverse=True)
    speaker_ids, speaker_of = np.unique(speakers, return_inverse=True)
    per_speaker = np.zeros(len(speaker_ids), dtype=int)
    per_speaker[speaker_of] = label_index
    if not np.array_equal(per_speaker[speaker_of], label_index):
        raise ValueError("the attribute varies within a speaker; use the refitting permutation test")
    rng = np.random.default_rng(seed)
    speaker_labels = rng.permuted(np.tile(per_speaker, (n_permutations, 1)), axis=1)
    # Predictions as class indices (-1: a class the test side never has), compared in chunks of
    # permutations so memory stays at chunk x utterances whatever the corpus size.
    index_of = {label: i for i, label in enumerate(classes.tolist())}
    predicted_index = np.array([index_of.get(p, -1) for p in predictions.tolist()])
    masks = [fold_of == fold for fold in np.unique(fold_of)]
    statistic = np.empty(n_permutations)
    chunk = max(1, 2**22 // max(1, len(truths)))
    for start in range(0, n_permutations, chunk):
        correct = speaker_labels[start : start + chunk][:, speaker_of] == predicted_index[None, :]
        statistic[start : start + chunk] = np.mean([correct[:, mask].mean(1) for mask in masks], axis=0)
    return float((1 + np.sum(statistic >= observed - 1e-12)) / (1 + n_permutations))
