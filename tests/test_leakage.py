from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ser_audit.corpus.folds import speaker_disjoint_folds
from ser_audit.corpus.interface import Corpus
from ser_audit.embeddings.extract import equal_length_runs, extract, pool
from ser_audit.leakage.attackers.linear import LinearProbe
from ser_audit.leakage.probe import attack, attack_units, probe_layers
from ser_audit.leakage.statistics.inference import SpeakerPermutations
from ser_audit.leakage.statistics.verdicts import decide, recommend
from ser_audit.testing import planted_leak_model


def relabellings(corpus: Corpus, n: int = 199, seed: int = 0) -> SpeakerPermutations:
    return SpeakerPermutations.draw(np.array(corpus.labels("gender")), attack_units(corpus, "gender"), n=n, seed=seed)


@pytest.fixture(scope="module")
def planted_rows(small_corpus: Corpus):
    model = planted_leak_model()
    layers = model.select_layers("pitch,noise")
    embeddings = extract(model, small_corpus, layers)
    permutations = relabellings(small_corpus)
    probes = probe_layers(embeddings, small_corpus, layers, speaker_disjoint_folds(small_corpus), permutations)
    verdict = decide(probes.attacked, permutations=permutations, threshold=0.6)
    return {row.layer: row for row in probes.rows} | {f"verdict:{v.layer}": v for v in verdict.layers} | {
        "probes": probes, "permutations": permutations}


def test_layer_carrying_f0_leaks_gender(planted_rows) -> None:
    row = planted_rows["pitch"]
    assert row.balanced_accuracy >= 0.9 and row.accuracy.mean >= 0.9
    assert row.p_value < 0.05 and row.p_value_exact and row.significant
    assert row.ci_low > row.chance and row.simultaneous_ci_low > row.chance
    assert len(row.accuracy.folds) == 5 and len(row.balanced_accuracy_folds) == 5 and row.n_test == 160


def test_layer_carrying_nothing_sits_at_chance(planted_rows) -> None:
    row = planted_rows["noise"]
    # No evidence of leakage: the interval reaches chance (below chance is no leak; cross-validation
    # on a null layer often lands there).
    assert row.ci_low <= row.chance
    assert row.p_value >= 0.05 and not row.significant
    assert abs(row.chance - 0.5) < 1e-9


def test_layer_verdicts_both_ways(planted_rows) -> None:
    pitch, noise = planted_rows["verdict:pitch"], planted_rows["verdict:noise"]
    assert pitch.verdict == "leaks" and pitch.significant and pitch.severity in ("high", "critical")
    # Utterance-level noise: no speaker clustering, so even 10 speakers bound it under chance + 0.1.
    assert noise.verdict == "private" and noise.severity == "none" and not noise.significant
    assert noise.upper_bound <= 0.6 and noise.minimum_detectable_leakage is not None


def test_recommendation_uses_simultaneous_upper_bounds(planted_rows) -> None:
    attacked = planted_rows["probes"].attacked
    noise = planted_rows["noise"]
    assert noise.simultaneous_ci_high > noise.balanced_accuracy  # a one-sided bound, jointly over the layers
    permutations = planted_rows["permutations"]
    certified = decide(attacked, permutations=permutations, threshold=noise.simultaneous_ci_high + 1e-6)
    assert recommend(certified, {"pitch", "noise"}).layer == "noise"
    strict = decide(attacked, permutations=permutations, threshold=noise.simultaneous_ci_high - 0.01)
    assert recommend(strict, {"pitch", "noise"}).layer is None


def wilson_interval(correct: int, total: int) -> tuple[float, float]:
    """The utterance-level interval ser-audit used before report schema 1.2, as a yardstick."""
    z, p = 1.959964, correct / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * np.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return centre - half, centre + half


def test_interval_width_follows_speakers_not_utterances(small_corpus: Corpus) -> None:
    """Utterances of one speaker share its voice: 160 utterances of 10 speakers are worth about 10."""
    labels = np.array(small_corpus.labels("gender"))
    speakers = np.array(small_corpus.labels("speaker"))
    rng = np.random.default_rng(0)
    voice = rng.standard_normal((len(set(speakers)), 8))[np.unique(speakers, return_inverse=True)[1]]
    features = voice + 0.3 * rng.standard_normal(voice.shape)
    folds = speaker_disjoint_folds(small_corpus)
    once = attack(LinearProbe(), features, labels, speakers, folds, relabellings(small_corpus), seed=0).statistics
    wilson_low, wilson_high = wilson_interval(int(round(once.mean * len(labels))), len(labels))
    assert once.ci_high - once.ci_low > 2 * (wilson_high - wilson_low)  # utterance-level Wilson: far too narrow


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("n_train, width", [(60, 30), (20, 50)])  # primal and dual solves
def test_closed_form_refits_equal_scikit_learn_refits(n_classes: int, n_train: int, width: int) -> None:
    rng = np.random.default_rng(n_classes)
    train, test = rng.standard_normal((n_train, width)), rng.standard_normal((20, width))
    classes = np.array(["a", "b", "c"][:n_classes])
    label_sets = rng.integers(0, n_classes, (4, n_train))
    closed_form = LinearProbe().permuted_predictions(train, test, label_sets, classes)
    refits = np.stack([LinearProbe().fit(train, classes[labels]).predict(test) for labels in label_sets])
    assert np.array_equal(closed_form, refits)


def test_closed_form_refits_equal_scikit_learn_refits_on_a_layer_constant_up_to_rounding() -> None:
    """Silent audio or a dead unit gives float32 features whose spread is rounding; the probe's scaler
    zeroes them, and the relabellings must see the same zeros (they once saw unit-variance noise)."""
    rng = np.random.default_rng(0)
    value = rng.standard_normal(16).astype(np.float32)
    train, test = np.tile(value, (51, 1)), np.tile(value, (13, 1))
    train[:, :4] = rng.standard_normal((51, 4)).astype(np.float32)  # a few live features beside the dead ones
    test[:, :4] = rng.standard_normal((13, 4)).astype(np.float32)
    classes = np.array(["female", "male"])
    label_sets = rng.integers(0, 2, (6, 51))
    closed_form = LinearProbe().permuted_predictions(train, test, label_sets, classes)
    refits = np.stack([LinearProbe().fit(train, classes[labels]).predict(test) for labels in label_sets])
    assert np.array_equal(closed_form, refits)


def test_a_constant_layer_is_chance_and_never_significant(small_corpus: Corpus) -> None:
    """The all-silent corpus of a user: every row identical, so every relabelling scores what the labels
    score, and the exact p-value is 1 (it was the smallest attainable, 1/70, with the row at chance)."""
    labels = np.array(small_corpus.labels("gender"))
    speakers = np.array(small_corpus.labels("speaker"))
    features = np.tile(np.float32(0.1) * np.arange(1, 33, dtype=np.float32), (len(labels), 1))
    folds = speaker_disjoint_folds(small_corpus)
    statistics = attack(LinearProbe(), features, labels, speakers, folds, relabellings(small_corpus), seed=0).statistics
    assert statistics.balanced_accuracy == 0.5
    assert statistics.p_value == 1.0


def test_balanced_accuracy_of_uninformative_predictions_is_chance_however_unbalanced() -> None:
    from ser_audit.leakage.statistics.inference import balanced_accuracy

    truth = np.r_[np.zeros(70, dtype=int), np.ones(30, dtype=int)]
    assert balanced_accuracy(truth, np.zeros(100, dtype=int), 2)[0] == 0.5  # majority guess: 0.7 accuracy
    rng = np.random.default_rng(0)
    guesses = rng.integers(0, 2, size=(4000, 100))
    assert abs(balanced_accuracy(np.tile(truth, (4000, 1)), guesses, 2).mean() - 0.5) < 0.005


def test_pooling_uses_the_time_axis() -> None:
    activation = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    pooled, reduction = pool(activation, 3)
    assert pooled.shape == (2, 24) and reduction is None
    assert np.allclose(pooled[0, :12], activation[0].mean(-1).ravel())
    wide, reduction = pool(np.zeros((1, 64, 64, 10), dtype=np.float32), 3, max_features=512)
    assert wide.shape == (1, 512) and reduction


def test_pooled_std_matches_float64_even_where_the_sum_of_squares_would_cancel() -> None:
    rng = np.random.default_rng(0)
    activation = rng.normal(size=(3, 4, 6, 50)).astype(np.float32)
    activation[0, 0] += 1e4  # mean far above the spread: the sum of squares alone would lose it
    activation[1, 1] = 3.0  # constant rows: std exactly 0, never NaN
    activation[2, 2] = 0.0
    pooled, _ = pool(activation, 3)
    flat = activation.reshape(3, -1, 50).astype(np.float64)
    expected = np.concatenate([flat.mean(-1), flat.std(-1)], axis=1)
    assert np.all(np.isfinite(pooled))
    assert np.allclose(pooled, expected, rtol=1e-4, atol=1e-4)


def test_batches_never_pad_variable_length_inputs() -> None:
    signals = [np.zeros(n) for n in (5, 5, 7, 5, 5)]
    assert [list(r) for r in equal_length_runs(signals)] == [[0, 1], [2], [3, 4]]
    references = [np.zeros(n) for n in (3, 4, 4, 4, 4)]
    assert [list(r) for r in equal_length_runs(signals, references)] == [[0], [1], [2], [3, 4]]


def test_a_fold_whose_training_side_lacks_a_class_is_noted() -> None:
    from ser_audit.corpus.folds import Fold
    from ser_audit.leakage.statistics.rows import training_gaps

    labels = np.array(["f", "f", "m", "m", "m"])
    folds = [
        Fold(name="a", train=np.array([2, 3]), test=np.array([0, 1, 4])),
        Fold(name="b", train=np.array([0, 2]), test=np.array([1, 3])),
    ]
    notes = training_gaps(labels, folds)
    assert len(notes) == 1 and notes[0].startswith("fold 1: no training utterance labelled f")


def test_input_references_find_gender_in_the_audio(small_corpus: Corpus) -> None:
    from ser_audit.leakage.probe import input_reference

    folds = speaker_disjoint_folds(small_corpus)
    permutations = relabellings(small_corpus, n=99)
    row = input_reference(small_corpus, folds, permutations, seed=0)
    assert row.layer == "input:lld" and row.n_features == 64
    assert row.balanced_accuracy >= 0.8 and row.p_value < 0.05
    pytest.importorskip("opensmile", reason="the eGeMAPS reference needs the opensmile extra")
    row = input_reference(small_corpus, folds, permutations, source="egemaps", seed=0)
    assert row.layer == "input:egemaps" and row.n_features == 88
    assert row.balanced_accuracy >= 0.8 and row.p_value < 0.05


def test_egemaps_without_opensmile_says_how_to_install_it(small_corpus: Corpus, monkeypatch) -> None:
    import sys

    from ser_audit.errors import ConfigError
    from ser_audit.frontend.egemaps import egemaps_functionals

    monkeypatch.setitem(sys.modules, "opensmile", None)  # makes `import opensmile` fail
    with pytest.raises(ConfigError, match=r"pip install 'ser-audit\[opensmile\]'"):
        egemaps_functionals(small_corpus)


def test_egemaps_reference_where_installed_else_a_note(onnx_model, manifest, tmp_path, monkeypatch) -> None:
    import sys

    from ser_audit.api import leakage_audit

    def audit():
        return leakage_audit(str(onnx_model), corpus=str(manifest), layers="fc_relu", scenarios=(), cache_dir=tmp_path)

    with monkeypatch.context() as blocked:
        blocked.setitem(sys.modules, "opensmile", None)
        report = audit()
    assert report.leakage.egemaps_reference is None
    assert any("pip install 'ser-audit[opensmile]'" in note for note in report.notes), report.notes
    pytest.importorskip("opensmile", reason="the eGeMAPS reference needs the opensmile extra")
    first, second = audit(), audit()
    assert first.leakage.egemaps_reference is not None and first.leakage.egemaps_reference.layer == "input:egemaps"
    assert first.leakage.egemaps_reference == second.leakage.egemaps_reference


def test_input_features_are_computed_once_per_key(tmp_path) -> None:
    from ser_audit.embeddings.store import cached_array

    calls = []

    def compute() -> np.ndarray:
        calls.append(1)
        return np.arange(12, dtype=np.float64).reshape(3, 4) / 7

    first, reused_first = cached_array(tmp_path, "key", "input:egemaps", compute)
    second, reused_second = cached_array(tmp_path, "key", "input:egemaps", compute)
    assert (reused_first, reused_second, len(calls)) == (False, True, 1)
    assert first.dtype == np.float32 and np.array_equal(first, second)
    cached_array(tmp_path, "other corpus", "input:egemaps", compute)
    assert len(calls) == 2


def test_verification_separates_identity_from_gender(small_corpus: Corpus) -> None:
    """Features that carry only gender look like a speaker cue over all trials, and like nothing within one gender."""
    from ser_audit.leakage.speaker import verification, verification_folds

    rng = np.random.default_rng(0)
    speakers = np.array(small_corpus.labels("speaker"))
    genders = np.array(small_corpus.labels("gender"))
    speaker_of = np.unique(speakers, return_inverse=True)[1]
    halves = verification_folds(small_corpus)
    assert all(len(set(speakers[fold.test])) == 5 for fold in halves)  # many speakers per held-out half
    identity = rng.standard_normal((10, 8))[speaker_of] + 0.1 * rng.standard_normal((len(speakers), 8))
    gender_only = np.where(genders == "female", 1.0, -1.0)[:, None] * np.ones(8) + 0.3 * rng.standard_normal((len(speakers), 8))
    voice = verification(identity, small_corpus, halves, layer="identity", layer_index=0)
    assert voice.eer < 0.05 and voice.eer_same_gender < 0.05
    assert voice.eer_ci_low <= voice.eer <= voice.eer_ci_high
    gender = verification(gender_only, small_corpus, halves, layer="gender", layer_index=1)
    assert gender.eer_same_gender > 0.35 and gender.eer_same_gender > gender.eer + 0.1
    assert gender.n_nontarget_same_gender < gender.n_nontarget


def test_closed_set_folds_keep_dialogues_apart() -> None:
    from ser_audit.corpus.interface import Corpus as CorpusType
    from ser_audit.corpus.interface import Utterance
    from ser_audit.leakage.speaker import closed_set_folds

    utterances = [Utterance(id=f"{s}_{d}_{k}", path=Path(f"/x/{s}{d}{k}.wav"), speaker=s, gender="female", emotion="sad",
                            extra={"dialog": f"{s}_impro0{d}"}) for s in ("a", "b") for d in range(4) for k in range(3)]
    folds = closed_set_folds(CorpusType(name="improvised", utterances=utterances, root=Path("/x")), n_folds=2)
    dialog = np.array([u.extra["dialog"] for u in utterances])
    for fold in folds:
        assert not set(dialog[fold.train]) & set(dialog[fold.test])


def test_speaker_verification_is_checked_before_any_long_work() -> None:
    """Two speakers (one a half) cannot give a non-target trial: say so up front, naming the flag and the fix."""
    from ser_audit.corpus.interface import Corpus as CorpusType
    from ser_audit.corpus.interface import Utterance
    from ser_audit.errors import CorpusError
    from ser_audit.leakage.speaker import check_verifiable

    def corpus(speakers: int) -> CorpusType:
        return CorpusType(name="few", root=Path("/x"), utterances=[
            Utterance(id=f"s{s}_{k}", path=Path(f"/x/s{s}_{k}.wav"), speaker=f"s{s}",
                      gender="female" if s % 2 else "male", emotion="sad") for s in range(speakers) for k in range(3)])

    with pytest.raises(CorpusError, match="--attribute speaker on corpus 'few' .2 speakers.*--attribute gender"):
        check_verifiable(corpus(2))
    check_verifiable(corpus(4))


def test_the_input_descriptors_are_computed_once_per_corpus(small_corpus: Corpus, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from ser_audit.leakage import probe

    computed: list[int] = []
    original = probe.lld_features

    def counting(corpus, observer=None):
        computed.append(1)
        return original(corpus)

    monkeypatch.setattr(probe, "lld_features", counting)
    folds, permutations = speaker_disjoint_folds(small_corpus), relabellings(small_corpus, n=19)
    first, again = (probe.input_reference(small_corpus, folds, permutations, cache_dir=tmp_path) for _ in range(2))
    assert len(computed) == 1 and first == again  # the second audit reads the store, with the same numbers
