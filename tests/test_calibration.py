"""Calibration, small version of ``benchmarks/calibration.py`` (whose tables the README quotes).

Null data sets carry speaker clustering (a voice per speaker, shared by its utterances), the
trap that made the old fixed-prediction test reject about twice as often as it claimed. A
test that is as good as it claims rejects at most 5% of the time, so the Clopper-Pearson
interval of its observed rate must reach down to 5% or below; the old tests, run on the
same data sets, must be caught by the same check. Planted leaks must be found. Intervals
must hold the true leakage (measured on new speakers) in at least 93% of data sets, within
Clopper-Pearson bounds, where the plain percentile bootstrap did not.

The end-to-end check at the bottom runs the real audio path (synthesised corpora, a planted
model, the tool's MLP attacker) on 12 seeds: it finds the planted layer every time.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from ser_audit.corpus.folds import speaker_disjoint_folds
from ser_audit.embeddings.extract import extract
from ser_audit.leakage.attackers.neural import NeuralAttacker
from ser_audit.leakage.probe import probe_layers
from ser_audit.leakage.scenarios.plan import AttackJob
from ser_audit.leakage.scenarios.references import EmbeddingReference, Labels, SharedData
from ser_audit.leakage.scenarios.run import run_attack
from ser_audit.leakage.statistics.calibration import ATTACKERS, DESIGNS, METHODS, Outcome, clopper_pearson, coverage, run
from ser_audit.leakage.statistics.inference import SpeakerPermutations, balanced_accuracy_of, permutation_p_value, widened_null
from ser_audit.leakage.statistics.resampling import fixed_null
from ser_audit.testing import planted_leak_model, tiny_corpus

NULL_REPETITIONS = 300
COVERAGE_REPETITIONS = 30


@pytest.fixture(scope="module")
def null_outcomes() -> list[Outcome]:
    return run(DESIGNS[0], leak=0.0, repetitions=NULL_REPETITIONS, n_layers=1, n_permutations=199)


def _low(outcomes: list[Outcome], fired: Callable[[Outcome], object]) -> tuple[float, int]:
    count = sum(bool(fired(o)) for o in outcomes)
    return clopper_pearson(count, len(outcomes))[0], count


@pytest.mark.parametrize("method", METHODS[:3])
def test_each_p_value_method_rejects_no_more_than_it_claims(null_outcomes: list[Outcome], method: str) -> None:
    low, count = _low(null_outcomes, lambda o: o.p_values[method] < 0.05)
    assert low <= 0.05, f"{method}: {count} of {len(null_outcomes)} null data sets rejected at 5%"


def test_the_old_fixed_prediction_test_is_caught_by_the_same_check(null_outcomes: list[Outcome]) -> None:
    low, count = _low(null_outcomes, lambda o: o.p_values[METHODS[4]] < 0.05)
    assert low > 0.05, f"the check has no power: the old k-NN test rejected only {count} of {len(null_outcomes)}"


@pytest.mark.parametrize("decision", ["any_significant", "gate_failed", "any_severity"])
def test_decisions_over_many_rows_rarely_fire_on_a_null_audit(null_outcomes: list[Outcome], decision: str) -> None:
    low, count = _low(null_outcomes, lambda o: getattr(o, decision))
    assert low <= 0.05, f"{decision}: {count} of {len(null_outcomes)}"
    assert sum(o.privacy_score >= 90 for o in null_outcomes) >= 0.95 * len(null_outcomes)


def test_a_clear_planted_leak_on_an_unbalanced_corpus_is_flagged() -> None:
    outcomes = run(DESIGNS[2], leak=2.2, repetitions=20, n_layers=1, first_seed=1000)
    assert 0.85 < np.mean([o.balanced_accuracy for o in outcomes]) < 0.95
    for decision in ("any_significant", "gate_failed", "any_severity"):
        low, count = _low(outcomes, lambda o: getattr(o, decision))
        assert low >= 0.8, f"{decision}: {count} of {len(outcomes)}"


def test_a_moderate_leak_on_an_unbalanced_corpus_is_a_leak_at_the_default_threshold() -> None:
    # 21 women and 9 men, probe L about 0.79. At T = chance + 0.1 the verdict missed 2 of these 40.
    outcomes = run(DESIGNS[2], leak=1.3, repetitions=40, n_layers=1, first_seed=7000)
    assert 0.72 < np.mean([o.balanced_accuracy for o in outcomes]) < 0.82
    low, count = _low(outcomes, lambda o: o.verdict == "leaks")
    assert low > 0.85, f"leaks in {count} of {len(outcomes)}"
    assert not any(o.grade == "A" for o in outcomes)


def test_leaks_past_the_threshold_is_rarely_claimed_where_the_truth_sits_at_it() -> None:
    # T at the largest true leakage of the rows: the least favourable threshold, every "leaks" there is false.
    outcomes = run(DESIGNS[2], leak=0.6, repetitions=80, n_layers=1, first_seed=5000, boundary=True)
    chance_plus_gap = 1 / 2 + 0.1  # what leak 0.6 plants, about
    assert all(o.largest_truth is not None and abs(o.largest_truth - chance_plus_gap) < 0.08 for o in outcomes)
    low, count = _low(outcomes, lambda o: o.boundary_leaks)
    assert low <= 0.05, f"leaks claimed past the truth in {count} of {len(outcomes)}"
    # Reading the estimate alone as the bound is caught by the same check.
    naive = sum(o.balanced_accuracy > (o.largest_truth or 1.0) for o in outcomes)
    assert clopper_pearson(naive, len(outcomes))[0] > 0.05, naive


@pytest.fixture(scope="module")
def strong_leak_on_few_speakers() -> list[Outcome]:
    # 5 speakers a class and probe L about 0.85: where the plain percentile bootstrap covered 75%.
    return run(DESIGNS[0], leak=2.0, repetitions=COVERAGE_REPETITIONS, n_layers=1, first_seed=3000, coverage=True)


@pytest.mark.parametrize("attacker", ATTACKERS)
def test_intervals_cover_the_true_leakage(strong_leak_on_few_speakers: list[Outcome], attacker: str) -> None:
    found = coverage(strong_leak_on_few_speakers, attacker)
    assert found.interval[1] >= 0.93, f"{attacker}: {found.covered} of {found.trials} intervals held the truth"
    assert found.median_width_ratio <= 2.0, f"{attacker}: {found.median_width_ratio:.2f} times the probe's width"


def test_the_plain_percentile_bootstrap_is_caught_by_the_same_check(strong_leak_on_few_speakers: list[Outcome]) -> None:
    found = coverage(strong_leak_on_few_speakers, "aux", rule="before")
    assert found.interval[1] < 0.93, f"no power: the plain bootstrap held the truth {found.covered} of {found.trials}"


def test_the_benchmark_smoke_mode_runs() -> None:
    script = Path(__file__).parents[1] / "benchmarks" / "calibration.py"
    done = subprocess.run([sys.executable, str(script), "--smoke", "--workers", "1"], capture_output=True, text=True,
                          timeout=120, check=True)
    for section in ("## Null", "## Coverage", "## Power", "## Minimum detectable leakage", "## The price of a looser"):
        assert section in done.stdout, done.stdout


# ----------------------------------------------------------------------------------------------
# The real audio path: synthesised corpora, extraction, the probe and the tool's MLP attacker.

SEEDS = range(12)


def _mlp_p_value(features: np.ndarray, corpus: Any, folds: Any, permutations: SpeakerPermutations, factor: float,
                 seed: int) -> float:
    labels = np.array(corpus.labels("gender"))
    layer = planted_leak_model().select_layers("noise")[0]
    shared = SharedData(Labels(labels, np.array(corpus.labels("emotion")), np.array(corpus.labels("speaker"))),
                        list(folds), shipped={"features": features})
    job = AttackJob(layer=layer, scenario="s2", kind="generic", design="mlp",
                    attacker=NeuralAttacker("mlp", epochs=15, seed=seed),
                    audit_inputs=EmbeddingReference.shipped("features", features))
    outcome = run_attack(job, shared)
    truth, predicted = np.concatenate(outcome.truths), np.concatenate(outcome.predictions)
    statistic = balanced_accuracy_of(truth, predicted, permutations.classes)
    return permutation_p_value(statistic, widened_null(fixed_null(permutations, folds, outcome.predictions), factor))


@pytest.fixture(scope="module")
def planted_audio(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[float]]:
    found: dict[str, list[float]] = {"probe pitch": [], "probe noise": [], "mlp pitch": [], "mlp noise": []}
    for seed in SEEDS:
        corpus = tiny_corpus(Path(tmp_path_factory.mktemp(f"seed{seed}")), per_speaker=6, seed=100 + seed)
        model = planted_leak_model(seed)
        model.module.noise.generator.manual_seed(seed)  # type: ignore[union-attr,operator]
        layers = model.select_layers("pitch,noise")
        embeddings = extract(model, corpus, layers)
        folds = speaker_disjoint_folds(corpus, seed=seed)
        permutations = SpeakerPermutations.draw(np.array(corpus.labels("gender")), np.array(corpus.labels("speaker")),
                                                n=199, seed=seed)
        probes = probe_layers(embeddings, corpus, layers, folds, permutations, seed=seed)
        for row in probes.rows:
            found[f"probe {row.layer}"].append(row.p_value)
        for name in ("pitch", "noise"):
            found[f"mlp {name}"].append(_mlp_p_value(embeddings.layers[name], corpus, folds, permutations,
                                                     probes.inflation[name], seed))
    return found


@pytest.mark.parametrize("test", ["probe", "mlp"])
def test_the_planted_layer_is_found_on_every_seed(planted_audio: dict[str, list[float]], test: str) -> None:
    p_values = planted_audio[f"{test} pitch"]
    assert all(p < 0.05 for p in p_values), p_values


@pytest.mark.parametrize("test", ["probe", "mlp"])
def test_the_noise_layer_is_not_flagged_more_than_chance_allows(planted_audio: dict[str, list[float]], test: str) -> None:
    p_values = planted_audio[f"{test} noise"]
    low, _ = clopper_pearson(sum(p < 0.05 for p in p_values), len(p_values))
    assert low <= 0.05, p_values
