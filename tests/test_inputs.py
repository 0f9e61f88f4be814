"""The one corpus → model inputs pipeline (``ser_audit.frontend.inputs``): whole utterances in batches of one
length with the fixed reference for evaluation, and made or drawn mini-batches for training."""

from __future__ import annotations

import doctest
import importlib
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from ser_audit.corpus.interface import Corpus
from ser_audit.frontend.features import FrontEnd
from ser_audit.frontend.inputs import (
    EvaluationInputs,
    TrainingInputs,
    equal_length_runs,
    reference_candidates,
    reference_rows,
    waveforms,
)
from ser_audit.frontend.spec import ExtraInput, Features, FrontEndSpec
from ser_audit.testing import TWO_INPUT_FRONTEND, tiny_corpus

EMOTIONS = ["neutral", "happy", "sad", "angry"]
LOG_MEL = FrontEndSpec(features=Features(kind="log_mel", n_fft=256, hop_length=128, n_mels=16),
                       layout=["batch", "channel", "freq", "time"], duration_s=0.5, emotions=EMOTIONS)
# The waveform itself ([batch, time]): a batch shows which samples of which utterance it holds.
RAW = FrontEndSpec(features=Features(kind="waveform"), layout=["batch", "time"], emotions=EMOTIONS)
TWO_REFERENCES = RAW.model_copy(update={"extra_inputs": [ExtraInput(name="first", source="neutral_same_speaker"),
                                                         ExtraInput(name="second", source="neutral_same_speaker")]})


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    return tiny_corpus(tmp_path_factory.mktemp("inputs") / "corpus", per_speaker=4, seed=0)


def test_the_docstring_examples_run() -> None:
    result = doctest.testmod(importlib.import_module("ser_audit.frontend.inputs"))
    assert result.attempted > 0 and result.failed == 0


def test_runs_are_of_one_length_and_reference_length_and_cut_at_the_batch_size() -> None:
    signals = [np.zeros(n) for n in (4, 4, 4, 4, 4, 6, 4)]
    assert [list(run) for run in equal_length_runs(signals)] == [[0, 1, 2, 3, 4], [5], [6]]
    assert [list(run) for run in equal_length_runs(signals, batch_size=2)] == [[0, 1], [2, 3], [4], [5], [6]]
    references = [np.zeros(n) for n in (3, 3, 5, 5, 5, 5, 5)]
    assert [list(run) for run in equal_length_runs(signals, references)] == [[0, 1], [2, 3, 4], [5], [6]]
    assert equal_length_runs([]) == []


def test_evaluation_batches_hold_whole_utterances_with_the_fixed_reference(corpus: Corpus) -> None:
    rows = [5, 1, 2, 30, 31]
    inputs = EvaluationInputs(TWO_REFERENCES, corpus, reference_choice=1)
    batches = list(inputs.batches(rows))
    assert np.concatenate([batch.rows for batch in batches]).tolist() == list(range(len(rows)))
    fixed = reference_rows(corpus, choice=1)
    assert inputs.reference is not None and inputs.reference.startswith("neutral reference = candidate 1")
    for batch in batches:
        primary, first, second = batch.fed
        assert first is second  # every reference input is fed the same reference
        for position, row in enumerate(batch.rows):
            whole = waveforms([corpus.utterances[rows[row]]], RAW)[0]
            reference = waveforms([corpus.utterances[fixed[rows[row]]]], RAW)[0]
            assert np.array_equal(primary[position].numpy(), whole)  # whole and unpadded
            assert batch.reference_audio is not None and np.array_equal(first[position].numpy(), reference)


def test_a_fixed_length_model_is_fed_its_length_in_batches_of_at_most_the_batch_size(corpus: Corpus) -> None:
    inputs = EvaluationInputs(LOG_MEL, corpus)
    batches = list(inputs.batches(range(len(corpus)), batch_size=16))
    assert [len(batch.rows) for batch in batches] == [16, 16, 8]
    assert {batch.audio.shape[-1] for batch in batches} == {LOG_MEL.num_samples}
    assert all(batch.reference_audio is None and len(batch.fed) == 1 for batch in batches) and inputs.reference is None
    with torch.no_grad():
        alone = FrontEnd(LOG_MEL)(batches[1].audio[3:4])
    assert torch.equal(batches[1].fed[0][3:4], alone)


def test_made_training_inputs_are_the_evaluation_inputs_of_the_rows_asked_for(corpus: Corpus) -> None:
    spec = TWO_INPUT_FRONTEND.model_copy(update={"duration_s": 0.5})
    rows = np.array([3, 7, 8, 20, 39])
    inputs = TrainingInputs(spec, corpus, rows=rows)
    assert inputs.audio is None and len(inputs.tensors) == 2
    evaluation = list(EvaluationInputs(spec, corpus).batches(rows))
    assert len(evaluation) == 1  # one length
    sample = inputs.sampler()
    picked = torch.tensor([4, 0])
    for made, expected in zip(sample(picked), evaluation[0].fed):
        assert torch.equal(made, expected[picked])
    assert all(torch.equal(a, b) for a, b in zip(inputs.whole([4, 0]), sample(picked)))
    with pytest.raises(ValueError, match="whole waveforms"):
        inputs.sampler(crop_s=0.1)
    with pytest.raises(ValueError, match="keep_audio"):
        TrainingInputs(RAW, corpus)


def test_drawn_training_inputs_are_random_crops_and_references_repeated_by_the_seed(corpus: Corpus) -> None:
    spec = RAW.model_copy(update={"extra_inputs": TWO_INPUT_FRONTEND.extra_inputs})
    rows = np.array([10, 11, 12, 13])
    inputs = TrainingInputs(spec, corpus, rows=rows, keep_audio=True)
    assert inputs.audio is not None and inputs.tensors == []
    signals = waveforms(corpus, spec)
    candidates = reference_candidates(corpus)
    drawn = [inputs.sampler(crop_s=0.05, random_reference=True, seed=4) for _ in range(2)]
    positions = torch.tensor([2, 0, 3])
    for _ in range(3):
        first, second = (sample(positions) for sample in drawn)
        assert all(torch.equal(a, b) for a, b in zip(first, second))  # the seed repeats the draws
        primary, reference = first
        assert primary.shape == reference.shape == (3, 800)
        for k, row in enumerate(rows[positions.numpy()]):
            assert _cut_from(primary[k].numpy(), signals[row])
            assert any(_cut_from(reference[k].numpy(), signals[c]) for c in candidates[row])
    whole = inputs.whole([1])
    assert np.array_equal(whole[0][0].numpy(), signals[11])
    assert np.array_equal(whole[1][0].numpy(), signals[reference_rows(corpus)[11]])  # tested with the fixed one
    assert inputs.moments(np.array([1]))[0] == pytest.approx(float(signals[11].mean()), abs=1e-6)


def _cut_from(piece: np.ndarray, signal: np.ndarray) -> bool:
    return any(np.array_equal(piece, signal[k : k + len(piece)]) for k in range(len(signal) - len(piece) + 1))


def test_fine_tuning_feeds_fixed_length_models_whole_and_crops_variable_length_ones(corpus: Corpus) -> None:
    fixed = TrainingInputs.fine_tuning(LOG_MEL, corpus, np.arange(6))
    assert torch.equal(fixed(torch.tensor([1]))[0], TrainingInputs(LOG_MEL, corpus, rows=np.arange(6)).whole([1])[0])
    variable = TrainingInputs.fine_tuning(RAW, corpus, np.arange(6), crop_s=0.1, seed=1)
    assert variable(torch.tensor([0, 1]))[0].shape == (2, 1600)


def test_normalise_feeds_global_normalisation_where_the_inputs_are_made(corpus: Corpus) -> None:
    inputs = TrainingInputs(LOG_MEL, corpus, rows=np.arange(4))
    before = inputs.whole([2])[0]
    inputs.normalise(LOG_MEL.model_copy(update={"normalisation": "global", "mean": 1.0, "std": 2.0}))
    assert torch.equal(inputs.whole([2])[0], (before - 1.0) / 2.0)
    with pytest.raises(ValueError, match="global"):
        inputs.normalise(LOG_MEL)


def test_no_other_module_cuts_corpus_audio_to_a_model_input() -> None:
    """``fit_length`` is how an utterance becomes a fixed-length input: only the pipeline calls it."""
    package = Path(__file__).resolve().parents[1] / "ser_audit"
    callers = sorted(str(path.relative_to(package)) for path in package.rglob("*.py")
                     if re.search(r"\bfit_length\(", path.read_text(encoding="utf-8")))
    assert callers == ["frontend/features.py", "frontend/inputs.py"]
