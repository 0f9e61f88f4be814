"""The one decision per layer: its multiplicity control, its three values, and that nothing contradicts it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from ser_audit.corpus.folds import speaker_folds
from ser_audit.leakage.attacked import AttackedRow, rows_of
from ser_audit.leakage.attackers.linear import LinearProbe
from ser_audit.leakage.probe import attack
from ser_audit.leakage.statistics.calibration import clustered_layers
from ser_audit.leakage.statistics.inference import SpeakerPermutations
from ser_audit.leakage.statistics.verdicts import decide, speakers_for_a_verdict, step_down_max_t
from ser_audit.report.model import Accuracy, LeakageResult
from ser_audit.report.scoring import GRADE_CAP, grade, privacy_score


def test_step_down_max_t_matches_its_definition() -> None:
    rng = np.random.default_rng(0)
    null = rng.standard_normal((4, 500))
    observed = np.array([3.5, 0.2, 2.4, -1.0])
    adjusted = step_down_max_t(observed, null)
    # By hand: rank by observed, compare each with the maximum over itself and every lower-ranked hypothesis.
    order = [0, 2, 1, 3]
    expected, running = {}, 0.0
    for j, h in enumerate(order):
        exceed = (null[order[j:]].max(0) >= observed[h]).sum()
        running = max(running, (1 + exceed) / 501)
        expected[h] = running
    assert np.allclose(adjusted, [expected[h] for h in range(4)])
    single_step = (1 + (null.max(0)[None, :] >= observed[:, None]).sum(1)) / 501
    assert np.all(adjusted <= single_step + 1e-12)  # step-down never loses to single-step


def test_exact_enumeration_gives_every_relabelling_once() -> None:
    labels = np.repeat(["female"] * 5 + ["male"] * 5, 3)
    speakers = np.repeat(np.arange(10), 3)
    permutations = SpeakerPermutations.draw(labels, speakers, n=999, seed=0)
    assert permutations.exact and permutations.distinct == 252 and permutations.n == 251
    per_speaker = {tuple(row[::3]) for row in permutations.labels.tolist()}
    assert len(per_speaker) == 251 and tuple(np.repeat([0, 1], 5)) not in per_speaker  # the observed one left out
    assert permutations.smallest_p_value == pytest.approx(1 / 252)


def test_too_few_speakers_say_how_many_would_do() -> None:
    assert speakers_for_a_verdict([2, 2]) == 8  # C(8, 4) = 70: 1/70 < 0.05; C(6, 3) = 20 is not enough
    assert speakers_for_a_verdict([5, 5]) == 10
    assert speakers_for_a_verdict([3, 1]) is not None


def audit(women: int, men: int, leak: float, seed: int, *, n_layers: int = 2, spread: float = 1.0):
    data = clustered_layers(women=women, men=men, leak=leak, n_layers=n_layers, seed=seed, model_seed=seed)
    folds = speaker_folds(data.speakers, data.labels, data.sessions, seed=seed)
    permutations = SpeakerPermutations.draw(data.labels, data.speakers, n=199, seed=seed)
    attacked = []
    for layer, features in enumerate(data.layers):
        probe = attack(LinearProbe(), features, data.labels, data.speakers, folds, permutations, seed=seed)
        s = probe.statistics
        s = dataclasses.replace(s, standard_error=s.standard_error * spread,
                                evidence=dataclasses.replace(s.evidence, standard_error=s.evidence.standard_error * spread))
        attacked.append(AttackedRow(LeakageResult(
            layer=f"layer{layer}", layer_index=layer, scenario="worst", attacker_kind="generic",
            attacker_architecture="probe", attacker_parameters=1, training_data="same", attribute="gender",
            accuracy=Accuracy(mean=s.mean, std=s.std, folds=s.folds, ci_low=s.accuracy_low, ci_high=s.accuracy_high),
            balanced_accuracy=s.balanced_accuracy, ci_low=s.ci_low, ci_high=s.ci_high, standard_error=s.standard_error,
            chance=s.chance, p_value=s.p_value, gap=s.gap, normalised_leakage=s.normalised_leakage, n_test=s.n_test,
            n_features=features.shape[1]), {}, s.evidence, []))
    return rows_of(attacked), decide(attacked, permutations=permutations, threshold=0.6)


def assert_consistent(rows: list[LeakageResult], verdict) -> None:
    """What a reader must never see: a significant row or layer with severity none, or the reverse."""
    for row in rows:
        assert (row.severity != "none") == bool(row.significant), row.key
    for layer in verdict.layers:
        assert (layer.severity != "none") == layer.significant
        assert layer.verdict != "leaks" or layer.significant
    assert (verdict.verdict == "leaks") == any(layer.verdict == "leaks" for layer in verdict.layers)


@pytest.mark.parametrize("seed", range(3))
def test_clear_leak_is_flagged_and_a_null_never_leaks(seed: int) -> None:
    rows, verdict = audit(12, 12, leak=2.0, seed=seed)
    assert_consistent(rows, verdict)
    assert verdict.verdict == "leaks" and all(layer.significant for layer in verdict.layers)
    for layer, row in zip(verdict.layers, rows):  # one probe row per layer
        if row.ci_low is not None and row.ci_low >= row.chance + 0.3:
            assert layer.severity in ("high", "critical")
    rows, verdict = audit(12, 12, leak=0.0, seed=seed)
    assert_consistent(rows, verdict)
    assert verdict.verdict != "leaks"


def test_a_moderate_unbalanced_leak_is_never_graded_a() -> None:
    # 21 women, 9 men: the grade follows the verdict, however high the privacy score.
    for seed in range(3):
        rows, verdict = audit(21, 9, leak=0.8, seed=seed)
        assert_consistent(rows, verdict)
        assert verdict.verdict in ("leaks", "inconclusive")
        assert grade(privacy_score(verdict), cap=GRADE_CAP[verdict.verdict]) != "A"


def test_a_small_clustered_null_is_inconclusive_not_private() -> None:
    # 10 speakers whose voices cluster: their bounds are too wide to certify anything.
    _, verdict = audit(5, 5, leak=0.0, seed=1)
    assert verdict.verdict == "inconclusive"
    assert all(layer.minimum_detectable_leakage is not None for layer in verdict.layers)


def test_every_relabelling_of_a_perfect_split_is_counted() -> None:
    # A tiny perfect leak on 3 + 3 speakers: 20 relabellings, p can be no smaller than 1/20 = 0.05.
    labels = np.repeat(["f"] * 3 + ["m"] * 3, 4)
    permutations = SpeakerPermutations.draw(labels, np.repeat(np.arange(6), 4), n=199, seed=0)
    assert permutations.exact and permutations.distinct == 20
    assert not (permutations.smallest_p_value < 0.05)


@pytest.mark.parametrize(("women", "men", "spread"), [(3, 3, 0.3), (3, 3, 1.0), (5, 5, 0.3)])
def test_speakers_needed_are_more_than_the_corpus_has_and_enough_for_a_verdict(women: int, men: int,
                                                                              spread: float) -> None:
    """An undecided layer never asks for the speakers the corpus already has, nor for fewer than any
    verdict needs: 3 + 3 speakers with a tight row once read 'about 6 speakers would decide (... at least
    8 could)'. ``spread`` narrows the rows' standard errors, as a steady attacker's are."""
    for seed in range(3):
        _, verdict = audit(women, men, leak=1.5, seed=seed, spread=spread)
        for layer in verdict.layers:
            if layer.speakers_needed is not None:
                assert layer.speakers_needed > women + men
                assert layer.speakers_needed >= (verdict.speakers_for_a_verdict or 0)
