"""Null distributions of a row's balanced accuracy under the audit's shared speaker relabellings.

Cross-validated accuracies of one data set are not binomial: the folds' attackers share
most of their training data, so their errors are correlated. Relabelling whole speakers and
refitting the whole cross-validation gives the exact null; the linear probe refits in
closed form (``LinearProbe.permuted_predictions``), so 999 relabellings cost a few matrix
products. Attackers trained on the aux corpus never see the audit labels, so relabelling
the audit corpus under their fixed predictions is exact too. Attackers refitted per fold at
a cost of minutes cannot be refitted 999 times; their fixed-prediction null is widened by
the probe's measured refit/fixed ratio on the same layer and folds, and marked approximate.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ser_audit.corpus.folds import Fold
from ser_audit.leakage.attackers.linear import LinearProbe
from ser_audit.leakage.statistics.inference import SpeakerPermutations, balanced_accuracy, fixed_prediction_null, inflation

DEFAULT_PERMUTATIONS = 999

REFITTED_EXACT = "speaker permutation, attacker refitted on every relabelling (exact)"
AUX_EXACT = "speaker permutation of the audit labels; the attacker never saw them (exact)"
REFITTED_APPROXIMATE = (
    "speaker permutation with predictions fixed, widened by the linear probe's refit/fixed null ratio on this layer "
    "(approximate: this attacker was not refitted per relabelling)"
)


def refitted_probe_null(
    probe: LinearProbe, features: np.ndarray, folds: Sequence[Fold], permutations: SpeakerPermutations
) -> tuple[np.ndarray, np.ndarray]:
    """The probe refitted on every relabelling: its balanced accuracy ``[B]`` and its pooled
    held-out predictions ``[B, n_tested]`` (class indices, in the folds' test order)."""
    tested = np.concatenate([fold.test for fold in folds])
    predicted = np.empty((permutations.n, len(tested)), dtype=np.int16)
    start = 0
    for fold in folds:
        relabelled = permutations.labels[:, fold.train]
        labels = probe.permuted_predictions(features[fold.train], features[fold.test], relabelled,
                                            np.arange(len(permutations.classes)))
        predicted[:, start : start + len(fold.test)] = labels
        start += len(fold.test)
    return balanced_accuracy(permutations.labels[:, tested], predicted, len(permutations.classes)), predicted


def fixed_spread(
    permutations: SpeakerPermutations, folds: Sequence[Fold], predicted: np.ndarray, *, draws: int = 20,
) -> float:
    """The fixed-prediction null's spread for predictions that the probe made after learning a
    relabelling (``predicted``: ``[B, n_tested]`` from ``refitted_probe_null``), averaged over ``draws``.

    The probe's own predictions would not do on a layer that leaks: perfect predictions held
    fixed have a spread of their own that says nothing about refitting.
    """
    tested = np.concatenate([fold.test for fold in folds])
    n_classes = len(permutations.classes)
    spreads = [
        float(np.std(balanced_accuracy(permutations.labels[:, tested], predicted[b][None, :], n_classes)))
        for b in range(min(draws, permutations.n))
    ]
    return float(np.mean(spreads))


def refit_inflation(
    permutations: SpeakerPermutations, folds: Sequence[Fold], refitted: np.ndarray, predicted: np.ndarray,
    *, draws: int = 20,
) -> float:
    """``inference.inflation`` measured where both nulls are nulls: the refitted null's spread against
    ``fixed_spread``."""
    return inflation(refitted, fixed_spread(permutations, folds, predicted, draws=draws))


def fixed_null(permutations: SpeakerPermutations, folds: Sequence[Fold], predictions: Sequence[np.ndarray]) -> np.ndarray:
    """Balanced accuracy of fixed per-fold predictions under every relabelling: ``[B]``."""
    tested = np.concatenate([fold.test for fold in folds])
    return fixed_prediction_null(permutations, tested, np.concatenate(predictions))


def layer_inflation(inflation: dict[str, float], layer: str) -> float:
    """The probe's ratio on ``layer``; on a layer without a probe row, the widest ratio measured anywhere."""
    return inflation.get(layer, max(inflation.values(), default=1.0))
