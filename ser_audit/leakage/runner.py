"""Fitting attackers on tapped layers over speaker-disjoint folds and scoring them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from sklearn.base import clone

from ser_audit.corpus.audio import read_audio
from ser_audit.corpus.folds import Fold, assert_speaker_disjoint
from ser_audit.corpus.interface import Corpus
from ser_audit.embeddings.extract import Embeddings, pool
from ser_audit.embeddings.store import cached_array, store_key
from ser_audit.frontend.features import FrontEnd
from ser_audit.frontend.spec import Features, FrontEndSpec
from ser_audit.leakage.attackers.interface import Attacker
from ser_audit.leakage.attackers.linear import LinearProbe
from ser_audit.leakage.resampling import DEFAULT_PERMUTATIONS, permutation_p_value
from ser_audit.leakage.stats import LeakageStatistics, leakage_statistics, training_gaps
from ser_audit.models.interface import LayerInfo
from ser_audit.progress import NULL_OBSERVER, ProgressObserver
from ser_audit.report.model import Accuracy, LeakageResult, Recommendation

# P0's S4 input: energy, 12 MFCC, ZCR, voicing probability, F0 and their deltas; 25 ms windows, 10 ms step.
LLD_SPEC = FrontEndSpec(
    sample_rate=16_000,
    features=Features(kind="lld", n_fft=400, win_length=400, hop_length=160, deltas=1),
    layout=["batch", "freq", "time"],
    emotions=[],
)


@dataclass
class CrossValidated:
    """Held-out truths and predictions per fold, and the last fold's fitted attacker."""

    truths: list[np.ndarray]
    predictions: list[np.ndarray]
    fitted: Attacker


def cross_validate(attacker: Attacker, features: np.ndarray, labels: np.ndarray, folds: Sequence[Fold]) -> CrossValidated:
    """Fit a fresh clone per fold on the training speakers; predict the held-out speakers."""
    truths, predictions = [], []
    fitted = attacker
    for fold in folds:
        fitted = clone(attacker).fit(features[fold.train], labels[fold.train])
        truths.append(labels[fold.test])
        predictions.append(fitted.predict(features[fold.test]))
    return CrossValidated(truths, predictions, fitted)


def attack(
    attacker: LinearProbe,
    features: np.ndarray,
    labels: np.ndarray,
    speakers: np.ndarray,
    folds: Sequence[Fold],
    *,
    seed: int,
    n_permutations: int = DEFAULT_PERMUTATIONS,
) -> tuple[CrossValidated, LeakageStatistics]:
    """Cross-validate the attacker, then test its mean fold accuracy against relabelled data."""
    outcome = cross_validate(attacker, features, labels, folds)
    observed = float(np.mean([np.mean(t == p) for t, p in zip(outcome.truths, outcome.predictions)]))
    p_value = permutation_p_value(
        attacker, features, labels, speakers, folds, observed, seed=seed, n_permutations=n_permutations
    )
    n_train = int(np.mean([len(fold.train) for fold in folds]))
    return outcome, leakage_statistics(outcome.truths, outcome.predictions, n_train=n_train, p_value=p_value)


def result_row(
    *,
    layer: str,
    layer_index: int | None,
    attacker: Attacker,
    outcome: CrossValidated,
    statistics: LeakageStatistics,
    attribute: str,
    n_features: int,
    reduction: str | None = None,
    n_train: int | None = None,
    notes: Sequence[str] = (),
) -> LeakageResult:
    return LeakageResult(
        layer=layer,
        layer_index=layer_index,
        scenario="probe",
        attacker_kind="generic",
        attacker_architecture="standardised features, ridge classifier without intercept (linear probe)",
        attacker_design="linear-probe",
        attacker_family="linear",
        attacker_parameters=outcome.fitted.parameter_count(),
        training_data="same",
        attribute=attribute,
        accuracy=Accuracy(
            mean=statistics.mean, std=statistics.std, folds=statistics.folds,
            ci_low=statistics.ci_low, ci_high=statistics.ci_high,
        ),
        balanced_accuracy=statistics.balanced_accuracy,
        chance=statistics.chance,
        p_value=statistics.p_value,
        gap=statistics.gap,
        normalised_leakage=statistics.normalised_leakage,
        n_test=statistics.n_test,
        n_features=n_features,
        n_train=n_train,
        reduction=reduction,
        notes=list(notes),
    )


def probe_layers(
    embeddings: Embeddings,
    corpus: Corpus,
    layers: Sequence[LayerInfo],
    folds: Sequence[Fold],
    *,
    attribute: str = "gender",
    seed: int = 0,
    n_permutations: int = DEFAULT_PERMUTATIONS,
    observer: ProgressObserver = NULL_OBSERVER,
) -> tuple[list[LeakageResult], list[dict[int, str]]]:
    """A generic linear-probe attacker per layer, trained on each fold's training side.

    Returns the rows and, per row, the held-out prediction of every tested utterance. For
    ``attribute="speaker"`` the folds are closed-set (every speaker on both sides) and the
    permutation test relabels utterances; otherwise folds must be speaker-disjoint.
    """
    if attribute != "speaker":
        assert_speaker_disjoint(corpus, list(folds))
    labels = np.array(corpus.labels(attribute))
    units = np.array(corpus.labels("speaker")) if attribute != "speaker" else np.arange(len(corpus))
    attacker = LinearProbe()
    gaps = training_gaps(labels, folds)
    rows, predictions = [], []
    with observer.task("fitting linear-probe attackers", total=len(layers)) as task:
        for layer in layers:
            features = embeddings.layers[layer.name]
            outcome, statistics = attack(
                attacker, features, labels, units, folds, seed=seed, n_permutations=n_permutations
            )
            rows.append(
                result_row(
                    layer=layer.name, layer_index=layer.index, attacker=attacker, outcome=outcome,
                    statistics=statistics, attribute=attribute, n_features=features.shape[1],
                    reduction=embeddings.reductions.get(layer.name),
                    n_train=int(np.mean([len(fold.train) for fold in folds])),
                    notes=gaps,
                )
            )
            predictions.append(held_out_predictions(outcome, folds))
            task.advance()
    return rows, predictions


def held_out_predictions(outcome: CrossValidated, folds: Sequence[Fold]) -> dict[int, str]:
    return {int(i): p for fold, fold_predictions in zip(folds, outcome.predictions)
            for i, p in zip(fold.test, fold_predictions.tolist())}


def lld_features(corpus: Corpus, observer: ProgressObserver = NULL_OBSERVER) -> np.ndarray:
    """Pooled (mean, std) P0 low-level descriptors of every utterance: 64 values each."""
    frontend = FrontEnd(LLD_SPEC)
    rows = []
    with observer.task("low-level descriptors (input reference)", total=len(corpus)) as task:
        for utterance in corpus:
            waveform = torch.from_numpy(read_audio(utterance.path, LLD_SPEC.sample_rate))[None]
            with torch.no_grad():
                descriptors = frontend(waveform).numpy()
            rows.append(pool(descriptors, axis=2)[0][0])
            task.advance()
    return np.stack(rows)


def input_reference(
    corpus: Corpus,
    folds: Sequence[Fold],
    *,
    source: str = "lld",
    attribute: str = "gender",
    seed: int = 0,
    n_permutations: int = DEFAULT_PERMUTATIONS,
    cache_dir: Path | None = None,
    observer: ProgressObserver = NULL_OBSERVER,
) -> LeakageResult:
    """How much of the attribute the audio itself carries: the same probe on pooled LLDs (P0's S4
    input, ``source="lld"``) or on eGeMAPS functionals (``"egemaps"``, needs openSMILE; about
    40x slower than the LLDs, so kept in the embedding store under ``cache_dir``)."""
    if source == "egemaps":
        from ser_audit.frontend.egemaps import egemaps_functionals, feature_version

        key = store_key("input", feature_version(), corpus.manifest_sha256())
        features, _ = cached_array(cache_dir, key, "input:egemaps", lambda: egemaps_functionals(corpus, observer))
    else:
        features = lld_features(corpus, observer)
    labels = np.array(corpus.labels(attribute))
    attacker = LinearProbe()
    units = np.array(corpus.labels("speaker")) if attribute != "speaker" else np.arange(len(corpus))
    outcome, statistics = attack(attacker, features, labels, units, folds, seed=seed, n_permutations=n_permutations)
    return result_row(
        layer=f"input:{source}", layer_index=None, attacker=attacker, outcome=outcome,
        statistics=statistics, attribute=attribute, n_features=features.shape[1],
        n_train=int(np.mean([len(fold.train) for fold in folds])), notes=training_gaps(labels, folds),
    )


def recommend(rows: Sequence[LeakageResult], threshold: float) -> Recommendation:
    """The earliest layer whose leakage stays at or under ``threshold`` in every row that taps it."""
    by_layer: dict[tuple[int, str], float] = {}
    for row in rows:
        key = (row.layer_index if row.layer_index is not None else -1, row.layer)
        by_layer[key] = max(by_layer.get(key, 0.0), row.accuracy.mean)
    for (_, layer), worst in sorted(by_layer.items()):
        if worst <= threshold:
            return Recommendation(
                layer=layer, threshold=threshold,
                reason=f"{layer} is the earliest audited layer whose leakage ({worst:.3f}) stays at or under {threshold:.3f}; "
                "process up to it on the device and transmit only its output.",
            )
    return Recommendation(
        layer=None, threshold=threshold,
        reason=f"no audited layer keeps leakage at or under {threshold:.3f}; none is a safe split point.",
    )
