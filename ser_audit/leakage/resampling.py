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
from ser_audit.leakage.inference import SpeakerPermutations, balanced_accuracy, fixed_prediction_null

DEFAULT_PERMUTATIONS = 999

REFITTED_EXACT = "speaker permutation, attacker refitted on every relabelling (exact)"
AUX_EXACT = "speaker permutation of the audit labels; the attacker never saw them (exact)"
REFITTED_APPROXIMATE = (
    "speaker permutation with predictions fixed, widened by the linear probe's refit/fixed null ratio on this layer "
    "(approximate: this attacker was not refitted per relabelling)"
)


def refitted_probe_null(
    probe: LinearProbe, features: np.ndarray, folds: Sequence[Fold], permutations: SpeakerPermutations
) -> np.ndarray:
    """Balanced accuracy of the probe refitted on every relabelling, pooled over folds: ``[B]``."""
    tested = np.concatenate([fold.test for fold in folds])
    predicted = np.empty((permutations.n, len(tested)), dtype=np.int64)
    start = 0
    for fold in folds:
        relabelled = permutations.labels[:, fold.train]
        labels = probe.permuted_predictions(features[fold.train], features[fold.test], relabelled,
                                            np.arange(len(permutations.classes)))
        predicted[:, start : start + len(fold.test)] = labels
        start += len(fold.test)
    return balanced_accuracy(permutations.labels[:, tested], predicted, len(permutations.classes))


def fixed_null(permutations: SpeakerPermutations, folds: Sequence[Fold], predictions: Sequence[np.ndarray]) -> np.ndarray:
    """Balanced accuracy of fixed per-fold predictions under every relabelling: ``[B]``."""
    tested = np.concatenate([fold.test for fold in folds])
    return fixed_prediction_null(permutations, tested, np.concatenate(predictions))
