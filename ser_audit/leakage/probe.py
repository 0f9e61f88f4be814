"""The linear probe on every tapped layer, and on the audio's own descriptors (the input references):
cross-validated over speaker-disjoint folds, with its exact refitting null."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from sklearn.base import clone

from ser_audit import __version__
from ser_audit.corpus.audio import read_audio
from ser_audit.corpus.folds import Fold, assert_speaker_disjoint, inner_split
from ser_audit.corpus.interface import Corpus
from ser_audit.embeddings.extract import Embeddings, pool
from ser_audit.embeddings.store import cached_array, store_key
from ser_audit.frontend.features import FrontEnd
from ser_audit.frontend.spec import Features, FrontEndSpec
from ser_audit.leakage.attacked import AttackedRow, rows_of
from ser_audit.leakage.attackers.interface import Attacker
from ser_audit.leakage.attackers.linear import LinearProbe
from ser_audit.leakage.statistics.inference import SpeakerPermutations, balanced_accuracy_of
from ser_audit.leakage.statistics.resampling import REFITTED_EXACT, refit_inflation, refitted_probe_null
from ser_audit.leakage.statistics.rows import LeakageStatistics, leakage_statistics, row_fields, training_gaps
from ser_audit.models.interface import LayerInfo
from ser_audit.progress import NULL_OBSERVER, ProgressObserver
from ser_audit.report.model import PROBE_DESIGN, LeakageResult

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


@dataclass
class ProbeAttack:
    """The linear probe on one layer: its cross-validation, statistics, and how much wider its
    refitting null is than its fixed-prediction null (``inference.inflation``)."""

    outcome: CrossValidated
    statistics: LeakageStatistics
    inflation: float
    # Per fold: balanced accuracy on held-out training speakers (for the strongest-attacker choice).
    validation: list[float | None]


def inner_validation(
    attacker: LinearProbe, features: np.ndarray, labels: np.ndarray, units: np.ndarray, folds: Sequence[Fold], seed: int
) -> list[float | None]:
    """Per fold, the probe fitted on part of the training speakers and scored on the rest."""
    scores: list[float | None] = []
    for fold in folds:
        split = inner_split(units[fold.train], labels[fold.train], 0.2, seed)
        if split is None:
            scores.append(None)
            continue
        train, held_out = fold.train[split[0]], fold.train[split[1]]
        predicted = clone(attacker).fit(features[train], labels[train]).predict(features[held_out])
        scores.append(balanced_accuracy_of(labels[held_out], predicted, np.unique(labels)))
    return scores


def attack(
    attacker: LinearProbe,
    features: np.ndarray,
    labels: np.ndarray,
    units: np.ndarray,
    folds: Sequence[Fold],
    permutations: SpeakerPermutations,
    *,
    seed: int,
) -> ProbeAttack:
    """Cross-validate the probe, then test its balanced accuracy against the refitted relabellings."""
    outcome = cross_validate(attacker, features, labels, folds)
    refitted, refitted_predictions = refitted_probe_null(attacker, features, folds, permutations)
    factor = refit_inflation(permutations, folds, refitted, refitted_predictions)
    statistics = leakage_statistics(
        outcome.truths, outcome.predictions, units=units[np.concatenate([f.test for f in folds])],
        classes=permutations.classes, null=refitted, p_value_method=REFITTED_EXACT, exact=True, widen=factor, seed=seed,
    )
    return ProbeAttack(outcome, statistics, factor, inner_validation(attacker, features, labels, units, folds, seed))


def result_row(
    *,
    layer: str,
    layer_index: int | None,
    probe: ProbeAttack,
    attribute: str,
    n_features: int,
    reduction: str | None = None,
    n_train: int | None = None,
    notes: Sequence[str] = (),
) -> LeakageResult:
    return LeakageResult(
        layer=layer,
        layer_index=layer_index,
        scenario="worst",
        attacker_kind="generic",
        attacker_architecture="standardised features, ridge classifier without intercept (linear probe)",
        attacker_design=PROBE_DESIGN,
        attacker_family="linear",
        attacker_parameters=probe.outcome.fitted.parameter_count(),
        training_data="same",
        attribute=attribute,
        n_features=n_features,
        n_train=n_train,
        reduction=reduction,
        notes=list(notes),
        **row_fields(probe.statistics),
    )


@dataclass
class ProbeResults:
    attacked: list[AttackedRow]
    # Per layer: the probe's refit/fixed null ratio, which widens the other refitted attackers' nulls.
    inflation: dict[str, float]

    @property
    def rows(self) -> list[LeakageResult]:
        return rows_of(self.attacked)


def attack_units(corpus: Corpus, attribute: str) -> np.ndarray:
    """What the permutations and the bootstrap move: speakers, or utterances for closed-set speaker identity."""
    return np.array(corpus.labels("speaker")) if attribute != "speaker" else np.arange(len(corpus))


def probe_layers(
    embeddings: Embeddings,
    corpus: Corpus,
    layers: Sequence[LayerInfo],
    folds: Sequence[Fold],
    permutations: SpeakerPermutations,
    *,
    attribute: str = "gender",
    seed: int = 0,
    observer: ProgressObserver = NULL_OBSERVER,
) -> ProbeResults:
    """A generic linear-probe attacker per layer, trained on each fold's training side.

    For ``attribute="speaker"`` the folds are closed-set (every speaker on both sides) and the
    permutations relabel utterances; otherwise folds must be speaker-disjoint.
    """
    if attribute != "speaker":
        assert_speaker_disjoint(corpus, list(folds))
    labels = np.array(corpus.labels(attribute))
    units = attack_units(corpus, attribute)
    attacker = LinearProbe()
    gaps = training_gaps(labels, folds)
    results = ProbeResults([], {})
    with observer.task("fitting linear-probe attackers", total=len(layers)) as task:
        for layer in layers:
            features = embeddings.layers[layer.name]
            probe = attack(attacker, features, labels, units, folds, permutations, seed=seed)
            row = result_row(
                layer=layer.name, layer_index=layer.index, probe=probe, attribute=attribute,
                n_features=features.shape[1], reduction=embeddings.reductions.get(layer.name),
                n_train=int(np.mean([len(fold.train) for fold in folds])), notes=gaps,
            )
            results.attacked.append(AttackedRow(row, held_out_predictions(probe.outcome, folds),
                                                probe.statistics.evidence, probe.validation))
            results.inflation[layer.name] = probe.inflation
            task.advance()
    return results


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
    permutations: SpeakerPermutations,
    *,
    source: str = "lld",
    attribute: str = "gender",
    seed: int = 0,
    cache_dir: Path | None = None,
    observer: ProgressObserver = NULL_OBSERVER,
) -> LeakageResult:
    """How much of the attribute the audio itself carries: the same probe on pooled LLDs (P0's S4
    input, ``source="lld"``) or on eGeMAPS functionals (``"egemaps"``, needs openSMILE; about
    40x slower than the LLDs). Both are kept in the embedding store under ``cache_dir``: the LLDs
    of a 5,000-utterance corpus take 20 s on one core."""
    if source == "egemaps":
        from ser_audit.frontend.egemaps import egemaps_functionals, feature_version

        key = store_key("input", feature_version(), corpus.manifest_sha256())
        features, _ = cached_array(cache_dir, key, "input:egemaps", lambda: egemaps_functionals(corpus, observer),
                                   corpus=corpus.name)
    else:
        # Keyed by the tool's version too: the descriptors are this package's own code, not a versioned library.
        key = store_key("input", f"lld {__version__} {LLD_SPEC.model_dump_json()}", corpus.manifest_sha256())
        features, _ = cached_array(cache_dir, key, "input:lld", lambda: lld_features(corpus, observer),
                                   corpus=corpus.name)
    labels = np.array(corpus.labels(attribute))
    probe = attack(LinearProbe(), features, labels, attack_units(corpus, attribute), folds, permutations, seed=seed)
    return result_row(
        layer=f"input:{source}", layer_index=None, probe=probe, attribute=attribute, n_features=features.shape[1],
        n_train=int(np.mean([len(fold.train) for fold in folds])), notes=training_gaps(labels, folds),
    )
