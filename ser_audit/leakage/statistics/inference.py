"""Speaker-level inference for one leakage row: the statistic, its null, its interval.

The statistic is balanced accuracy (mean per-class recall) over every held-out prediction,
against chance 1/C: attackers train class-balanced, and balanced accuracy has expectation
exactly 1/C whenever the predictions are independent of the labels, however unbalanced the
corpus or biased the attacker.

Nulls are speaker-level: the attribute is constant within a speaker, so whole speakers swap
labels (class counts kept) and each keeps its utterances. One draw of permutations is
shared by every row of an audit (``SpeakerPermutations``), so the rows' null statistics are
computed on the same relabellings and a max-T adjustment (``multiplicity``) sees how the
rows depend on each other.

Intervals resample speakers, not utterances (a cluster bootstrap stratified by class), so
their width follows the number of speakers.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

N_BOOTSTRAP = 999


def class_indices(values: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Index of each value in ``classes``; -1 for a value outside them (a prediction of an unseen class)."""
    position = {label: i for i, label in enumerate(classes.tolist())}
    return np.fromiter((position.get(v, -1) for v in values.tolist()), dtype=np.int64, count=len(values))


def balanced_accuracy(truth: np.ndarray, predicted: np.ndarray, n_classes: int) -> np.ndarray:
    """Mean per-class recall of class-index arrays; rows of 2-D inputs are separate data sets.

    Classes absent from a row's truth are left out of its mean (as scikit-learn does).
    """
    truth, predicted = np.atleast_2d(truth), np.atleast_2d(predicted)
    recalls = np.zeros((truth.shape[0], n_classes))
    present = np.zeros((truth.shape[0], n_classes), dtype=bool)
    hit = truth == predicted
    for c in range(n_classes):
        members = truth == c
        count = members.sum(1)
        present[:, c] = count > 0
        recalls[:, c] = np.where(count > 0, (hit & members).sum(1) / np.maximum(count, 1), 0.0)
    return recalls.sum(1) / np.maximum(present.sum(1), 1)


def balanced_accuracy_of(truth: np.ndarray, predicted: np.ndarray, classes: np.ndarray) -> float:
    """Balanced accuracy of label arrays (not indices) over ``classes``."""
    return float(balanced_accuracy(class_indices(truth, classes), class_indices(predicted, classes), len(classes))[0])


# Up to this many distinct relabellings (C(14, 7) = 3432 for 7 women and 7 men), every one is
# enumerated rather than sampled: p-values are then exact and their smallest attainable value known.
EXACT_LIMIT = 5000


def distinct_relabellings(class_counts: Sequence[int]) -> int:
    """How many ways whole units can carry these class counts: the multinomial coefficient."""
    total, count = 0, 1
    for k in class_counts:
        total += k
        count *= math.comb(total, k)
    return count


def _enumerate(per_unit: np.ndarray, n_classes: int) -> np.ndarray:
    """Every distinct assignment of the class counts of ``per_unit`` to its units, the given one first."""
    counts = np.bincount(per_unit, minlength=n_classes)
    units = np.arange(len(per_unit))
    assignments: list[np.ndarray] = []

    def fill(assigned: np.ndarray, free: np.ndarray, c: int) -> None:
        if c == n_classes - 1:
            done = assigned.copy()
            done[free] = c
            assignments.append(done)
            return
        for chosen in itertools.combinations(free.tolist(), int(counts[c])):
            step = assigned.copy()
            step[list(chosen)] = c
            fill(step, np.setdiff1d(free, chosen), c + 1)

    fill(np.full(len(per_unit), -1, dtype=np.int64), units, 0)
    table = np.stack(assignments)
    first = np.flatnonzero((table == per_unit).all(1))
    return np.concatenate([table[first], np.delete(table, first, axis=0)])


@dataclass(frozen=True)
class SpeakerPermutations:
    """Relabellings of the audit corpus, made once and shared by every row.

    ``labels[b]`` is the class index of every utterance under relabelling b. When the attribute
    is constant within each speaker, whole speakers swap labels; otherwise (speaker identity,
    closed-set) utterances do. When the speakers admit at most ``EXACT_LIMIT`` distinct
    relabellings, ``labels`` holds every one of them but the observed labelling (``exact``), so
    that ``(1 + #{null >= L}) / (1 + B)`` is the exact permutation p-value; otherwise ``n``
    are drawn at random.
    """

    classes: np.ndarray
    labels: np.ndarray
    exact: bool = False
    # Distinct relabellings the units admit, the observed one included.
    distinct: int = 0
    # Units (speakers, or utterances) per class: what decides how many distinct relabellings exist.
    unit_counts: tuple[int, ...] = ()

    @classmethod
    def draw(cls, labels: np.ndarray, speakers: np.ndarray, *, n: int, seed: int,
             exact_limit: int = EXACT_LIMIT) -> "SpeakerPermutations":
        classes, index = np.unique(labels, return_inverse=True)
        speaker_ids, speaker_of = np.unique(speakers, return_inverse=True)
        per_speaker = np.zeros(len(speaker_ids), dtype=np.int64)
        per_speaker[speaker_of] = index
        rng = np.random.default_rng([seed, 0x5E1])
        if np.array_equal(per_speaker[speaker_of], index):
            counts = tuple(np.bincount(per_speaker, minlength=len(classes)).tolist())
            distinct = distinct_relabellings(counts)
            if distinct <= exact_limit:
                every = _enumerate(per_speaker, len(classes))[1:]
                return cls(classes, every[:, speaker_of], exact=True, distinct=distinct, unit_counts=counts)
            relabelled = rng.permuted(np.tile(per_speaker, (n, 1)), axis=1)[:, speaker_of]
            return cls(classes, relabelled, distinct=distinct, unit_counts=counts)
        counts = tuple(np.bincount(index, minlength=len(classes)).tolist())
        return cls(classes, rng.permuted(np.tile(index, (n, 1)), axis=1), distinct=distinct_relabellings(counts),
                   unit_counts=counts)

    @property
    def n(self) -> int:
        return len(self.labels)

    @property
    def smallest_p_value(self) -> float:
        """The smallest p-value any row can reach: ``1 / (1 + B)``; exact enumeration cannot beat
        ``1 / distinct``, however strong the leak."""
        return 1.0 / (1 + self.n)


def permutation_p_value(statistic: float, null: np.ndarray) -> float:
    """``(1 + #{null >= statistic}) / (1 + B)``: valid for any number of draws B."""
    return float((1 + np.sum(null >= statistic - 1e-12)) / (1 + len(null)))


def fixed_prediction_null(permutations: SpeakerPermutations, tested: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Balanced accuracy of fixed predictions against every relabelling of the utterances ``tested``.

    Exact for an attacker that never saw the audit corpus's labels (trained on the aux
    corpus): its predictions are then independent of them under the null. For an attacker
    refitted on the audit folds it is too narrow (see ``inflation``).
    """
    predicted_index = class_indices(predicted, permutations.classes)
    out = np.empty(permutations.n)
    chunk = max(1, 2**22 // max(1, len(tested)))
    for start in range(0, permutations.n, chunk):
        truth = permutations.labels[start : start + chunk][:, tested]
        out[start : start + chunk] = balanced_accuracy(truth, predicted_index[None, :], len(permutations.classes))
    return out


def inflation(refitted_null: np.ndarray, fixed_spread: float, *, ceiling: float = 3.0) -> float:
    """How much wider the refitting null is than a fixed-prediction null (its spread ``fixed_spread``).

    Refitted per fold, an attacker learns the training speakers' chance associations, and
    speakers of one class that happen to sound alike make neighbouring folds right (or wrong)
    together: fold accuracies correlate positively, which holding predictions fixed cannot
    reproduce. The linear probe refits in closed form, so both nulls are known for it on
    every layer (``resampling.refit_inflation``); their spread ratio (at least 1) widens the
    fixed-prediction null and the bootstrap interval of the costlier attackers refitted on the
    same folds.
    """
    if fixed_spread <= 0:
        return 1.0
    return float(np.clip(np.std(refitted_null) / fixed_spread, 1.0, ceiling))


def widened_null(null: np.ndarray, factor: float) -> np.ndarray:
    """The null spread ``factor`` times about its own mean."""
    centre = float(np.mean(null))
    return centre + factor * (null - centre)


@dataclass(frozen=True)
class Interval:
    low: float
    high: float
    standard_error: float


def _t_ratio(degrees_of_freedom: int) -> float:
    """Student's t over the normal quantile at 97.5%: how much wider few units make a 95% interval."""
    from scipy.stats import norm, t

    return float(t.ppf(0.975, max(degrees_of_freedom, 1)) / norm.ppf(0.975))


def speaker_bootstrap(
    truth: np.ndarray,
    predicted: np.ndarray,
    units: np.ndarray,
    classes: np.ndarray,
    *,
    n: int = N_BOOTSTRAP,
    seed: int = 0,
    widen: float = 1.0,
    small_sample: bool = True,
) -> tuple[Interval, Interval]:
    """95% percentile intervals for balanced accuracy and plain accuracy, resampling units.

    Units (speakers) are drawn with replacement within each class, so every resample keeps
    each class and the corpus's class balance. ``widen`` stretches each interval about the
    estimate (``inflation``). Returns (balanced accuracy interval, accuracy interval).

    With ``small_sample`` (the default) three corrections make the interval cover on few
    speakers, where the plain percentile bootstrap covered 70-85% at nominal 95% on 5 speakers
    per class (``benchmarks/calibration.py``, coverage tables):

    - each class draws ``n_c - 1`` of its ``n_c`` units, which makes the resampled variance
      the unbiased one instead of ``(n_c - 1) / n_c`` of it;
    - distances from the estimate are scaled by t over z with ``units - classes`` degrees of
      freedom;
    - a floor: a class's spread is at least that of its units' recalls plus one pseudo-unit
      at recall 1/2, so five perfectly classified speakers per class give about
      [0.85, 1.00] rather than [1.00, 1.00]. Far from the bounds the floor does not bite.
    """
    truth_index, predicted_index = class_indices(truth, classes), class_indices(predicted, classes)
    unit_ids, unit_of = np.unique(units, return_inverse=True)
    n_units, n_classes = len(unit_ids), len(classes)
    # Per unit and class: test utterances and correct predictions.
    counts = np.zeros((n_units, n_classes))
    correct = np.zeros((n_units, n_classes))
    np.add.at(counts, (unit_of, truth_index), 1)
    np.add.at(correct, (unit_of, truth_index), (truth_index == predicted_index).astype(float))
    unit_class = counts.argmax(1)
    rng = np.random.default_rng([seed, 0xB007])
    weights = np.zeros((n, n_units))
    floor_variance, present_classes = 0.0, 0
    for c in range(n_classes):
        members = np.flatnonzero(unit_class == c)
        if not len(members):
            continue
        present_classes += 1
        size = len(members) - 1 if small_sample and len(members) > 1 else len(members)
        draws = rng.integers(0, len(members), size=(n, size))
        np.add.at(weights, (np.arange(n)[:, None], members[draws]), 1)
        recalls = correct[members, c] / np.maximum(counts[members, c], 1)
        floor_variance += float(np.var(np.append(recalls, 0.5), ddof=1)) / len(members)
    floor = np.sqrt(floor_variance) / max(present_classes, 1) if small_sample else 0.0
    scale = _t_ratio(n_units - n_classes) if small_sample else 1.0
    per_class_n, per_class_correct = weights @ counts, weights @ correct
    present = per_class_n > 0
    recall = np.where(present, per_class_correct / np.maximum(per_class_n, 1), 0.0)
    balanced = recall.sum(1) / np.maximum(present.sum(1), 1)
    plain = per_class_correct.sum(1) / np.maximum(per_class_n.sum(1), 1)
    estimates = (
        float(balanced_accuracy(truth_index, predicted_index, n_classes)[0]),
        float(np.mean(truth_index == predicted_index)),
    )
    intervals = []
    for estimate, resampled, least in zip(estimates, (balanced, plain), (floor, 0.0)):
        low, high = np.quantile(resampled, [0.025, 0.975])
        # A skewed resample can miss its own estimate; the floor keeps a degenerate one from certifying.
        below = max(estimate - low, 0.0, 1.959964 * least) * scale * widen
        above = max(high - estimate, 0.0, 1.959964 * least) * scale * widen
        intervals.append(Interval(
            low=float(np.clip(estimate - below, 0.0, 1.0)),
            high=float(np.clip(estimate + above, 0.0, 1.0)),
            standard_error=max(float(np.std(resampled, ddof=1)), least) * scale * widen,
        ))
    return intervals[0], intervals[1]
