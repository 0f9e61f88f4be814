"""Calibration over 20 seeds on planted models: a layer that carries no speaker information is
flagged significant (p < 0.05) in at most 2 runs, a layer that carries gender in all 20.

Each seed synthesises its own corpus (new speakers, new voices) and draws new noise. Both
p-values the tool reports are checked: the refitting speaker permutation of the linear
probe, and the fixed-prediction speaker permutation of the neural scenario attackers
(here an MLP on pooled statistics refitted per fold, the same code path).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ser_audit.corpus.folds import speaker_disjoint_folds
from ser_audit.embeddings.extract import extract
from ser_audit.leakage.attackers.neural import NeuralAttacker
from ser_audit.leakage.resampling import fixed_prediction_p_value
from ser_audit.leakage.runner import probe_layers
from ser_audit.leakage.scenario_runner import AttackJob, run_attack
from ser_audit.testing import planted_leak_model, tiny_corpus

SEEDS = range(20)


def _mlp_p_value(features: np.ndarray, corpus, folds, seed: int) -> float:
    labels = np.array(corpus.labels("gender"))
    layer = planted_leak_model().select_layers("noise")[0]
    job = AttackJob(layer=layer, scenario="s2", kind="generic", design="mlp",
                    attacker=NeuralAttacker("mlp", epochs=15, seed=seed), audit_inputs=features,
                    audit_attribute=labels, audit_emotion=np.array(corpus.labels("emotion")), folds=list(folds))
    outcome = run_attack(job)
    tested = np.concatenate([fold.test for fold in folds])
    fold_of = np.concatenate([np.full(len(fold.test), k) for k, fold in enumerate(folds)])
    observed = float(np.mean([np.mean(t == p) for t, p in zip(outcome.truths, outcome.predictions)]))
    speakers = np.array(corpus.labels("speaker"))[tested]
    return fixed_prediction_p_value(np.concatenate(outcome.truths), np.concatenate(outcome.predictions), speakers,
                                    fold_of, observed, seed=seed)


@pytest.fixture(scope="module")
def calibration(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[float]]:
    found: dict[str, list[float]] = {"probe pitch": [], "probe noise": [], "mlp pitch": [], "mlp noise": []}
    for seed in SEEDS:
        corpus = tiny_corpus(Path(tmp_path_factory.mktemp(f"seed{seed}")), per_speaker=6, seed=100 + seed)
        model = planted_leak_model(seed)
        model.module.noise.generator.manual_seed(seed)
        layers = model.select_layers("pitch,noise")
        embeddings = extract(model, corpus, layers)
        folds = speaker_disjoint_folds(corpus, seed=seed)
        rows, _ = probe_layers(embeddings, corpus, layers, folds, seed=seed)
        for row in rows:
            found[f"probe {row.layer}"].append(row.p_value)
        for name in ("pitch", "noise"):
            found[f"mlp {name}"].append(_mlp_p_value(embeddings.layers[name], corpus, folds, seed))
    return found


@pytest.mark.parametrize("test", ["probe", "mlp"])
def test_a_layer_without_the_attribute_is_rarely_flagged(calibration, test: str) -> None:
    p_values = calibration[f"{test} noise"]
    assert sum(p < 0.05 for p in p_values) <= 2, p_values


@pytest.mark.parametrize("test", ["probe", "mlp"])
def test_a_layer_with_the_attribute_is_always_flagged(calibration, test: str) -> None:
    p_values = calibration[f"{test} pitch"]
    assert all(p < 0.05 for p in p_values), p_values
