"""Transcript stages: greedy CTC decoding, symbol error rate, the CTC loss on ``transcribe``, the
stacked front-end with pitch, and the shared-stage cache."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from ser_audit.corpus.interface import Corpus
from ser_audit.corpus.synthetic.voice import CONSONANT_SYMBOLS, VOWEL_SYMBOLS, WORD_BOUNDARY
from ser_audit.errors import ConfigError, CorpusError, ModelError
from ser_audit.frontend.features import FrontEnd
from ser_audit.frontend.spec import Features, FrontEndSpec
from ser_audit.models.loop import torch_shuffle
from ser_audit.models.reference import Stage
from ser_audit.models.training import corpus_inputs
from ser_audit.models.transcription import (
    ctc_loss,
    edit_distance,
    encode,
    greedy_decode,
    symbol_error_rate,
    train_transcript_stage,
)
from ser_audit.progress import NULL_OBSERVER
from ser_audit.testing import tiny_corpus

ALPHABET = WORD_BOUNDARY + "".join(CONSONANT_SYMBOLS) + "".join(VOWEL_SYMBOLS)


def test_greedy_decoding_merges_repeats_and_drops_blanks() -> None:
    best = [0, 2, 2, 0, 2, 1, 1, 0]  # blank, b, b, blank, b, a, a, blank
    logits = nn.functional.one_hot(torch.tensor([best]), 3).float()
    assert greedy_decode(logits) == [[2, 2, 1]]  # the blank between the b's keeps both


def test_edit_distance_and_symbol_error_rate() -> None:
    assert edit_distance("kitten", "sitting") == 3 and edit_distance("", "abc") == 3 and edit_distance("abc", "abc") == 0
    assert symbol_error_rate(["abcd", "ab"], ["abcd", ""]) == pytest.approx(2 / 6)
    with pytest.raises(CorpusError, match="outside the model's alphabet"):
        encode("abz", "ab", where="corpus x")
    assert encode("ba a", " ab", where="x") == [3, 2, 1, 2]


def test_a_transcript_stage_needs_an_alphabet_and_only_it_shares() -> None:
    with pytest.raises(ConfigError, match="alphabet"):
        Stage(target="transcript")
    with pytest.raises(ConfigError, match="alphabet"):
        Stage(target="emotion", alphabet="ab")
    with pytest.raises(ConfigError, match="shares"):
        Stage(target="emotion", shares=("asr.*",))


class TinyRecogniser(nn.Module):
    """A per-frame linear recogniser over ``[batch, rows, frames]``, and an emotion head."""

    def __init__(self, rows: int, n_symbols: int) -> None:
        super().__init__()
        self.asr = nn.Linear(rows, n_symbols)
        self.classifier = nn.Linear(rows, 4)

    def transcribe(self, features: torch.Tensor) -> torch.Tensor:
        return self.asr(features.transpose(1, 2))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(features.mean(-1))


def test_ctc_learns_a_toy_mapping_and_greedy_decoding_reads_it_back() -> None:
    """Frames that spell their label one-hot: CTC on ``transcribe`` must learn to read them."""
    torch.manual_seed(0)
    sequences = [torch.randint(1, 4, (5,)).tolist() for _ in range(32)]
    frames = torch.zeros(32, 4, 15)
    for row, sequence in enumerate(sequences):
        for k, label in enumerate(sequence):
            frames[row, label, 3 * k : 3 * k + 2] = 1.0  # two frames of the symbol, one of silence
    model = TinyRecogniser(4, 4)
    loss = ctc_loss(model, [frames], sequences)
    optimiser = torch.optim.Adam(model.parameters(), lr=0.1)
    for _ in range(200):
        optimiser.zero_grad()
        loss(torch.arange(32), 0).backward()
        optimiser.step()
    with torch.no_grad():
        assert greedy_decode(model.transcribe(frames)) == sequences


@pytest.fixture(scope="module")
def readers(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    return tiny_corpus(tmp_path_factory.mktemp("readers") / "corpus", preset="librispeech-like", per_speaker=2)


def _inputs(corpus: Corpus) -> list[torch.Tensor]:
    spec = FrontEndSpec(features=Features(kind="mfcc", n_fft=320, hop_length=160, n_mels=40, n_mfcc=13),
                        layout=["batch", "freq", "time"], duration_s=3.0, emotions=[])
    features = corpus_inputs(corpus, spec)[0]
    return [(features - features.mean()) / features.std()]


def test_the_stage_scores_held_out_readers_and_shares_through_the_cache(readers: Corpus, tmp_path: Path) -> None:
    stage = Stage(corpus="librispeech-like", target="transcript", alphabet=ALPHABET, epochs=2, batch_size=16,
                  learning_rate=0.01, shares=("asr.*",))
    inputs = _inputs(readers)

    def run(cache: Path | None) -> tuple[TinyRecogniser, dict, torch.Tensor]:
        torch.manual_seed(0)
        model = TinyRecogniser(13, len(ALPHABET) + 1)
        shuffle = torch_shuffle(0)
        record = train_transcript_stage(model, stage, readers, inputs, max_seconds=3.0, shuffle=shuffle, seed=0,
                                        cache_dir=cache, observer=NULL_OBSERVER, label="test")
        return model, record, shuffle(10)

    trained, record, after = run(tmp_path)
    assert record["held_out_session"] == "test" and len(record["held_out_speakers"]) == 8
    assert not set(record["held_out_speakers"]) & set(record["speakers"])
    assert record["n_train"] + record["n_held_out"] + record["n_left_out_too_long"] == len(readers)
    assert 0.0 <= record["symbol_error_rate"] and record["baseline_symbol"] == " " and not record["cached"]
    assert 0.7 < record["baseline_symbol_error_rate"] < 1.0  # the word boundary is the commonest symbol
    assert len(list((tmp_path / "stages").glob("transcript-*.pt"))) == 1

    loaded, again, after_loaded = run(tmp_path)
    assert again["cached"] and again["symbol_error_rate"] == record["symbol_error_rate"]
    assert torch.equal(loaded.asr.weight, trained.asr.weight)  # the shared parameters come from the cache
    assert not torch.equal(loaded.classifier.weight, torch.zeros_like(loaded.classifier.weight))
    assert torch.equal(after, after_loaded)  # the shuffle moved on as if the stage had trained

    # Another head beside the recogniser (a class the shared parameters do not pass through) shares it.
    torch.manual_seed(0)
    with_head = TinyRecogniser(13, len(ALPHABET) + 1)
    with_head.extra = nn.GRU(2, 2)
    shared = train_transcript_stage(with_head, stage, readers, inputs, max_seconds=3.0, shuffle=torch_shuffle(0), seed=0,
                                    cache_dir=tmp_path, observer=NULL_OBSERVER, label="test")
    assert shared["cached"] and torch.equal(with_head.asr.weight, trained.asr.weight)

    # Another forward with the same parameters is another recogniser: the stage trains again.
    class OtherRecogniser(TinyRecogniser):
        def transcribe(self, features: torch.Tensor) -> torch.Tensor:
            return self.asr(features.transpose(1, 2).tanh())

    torch.manual_seed(0)
    other_code = train_transcript_stage(OtherRecogniser(13, len(ALPHABET) + 1), stage, readers, inputs, max_seconds=3.0,
                                        shuffle=torch_shuffle(0), seed=0, cache_dir=tmp_path, observer=NULL_OBSERVER,
                                        label="test")
    assert not other_code["cached"]
    # No cache folder, or another stage: the stage trains again.
    _, other, _ = run(None)
    assert not other["cached"]
    changed = replace(stage, epochs=3)
    torch.manual_seed(0)
    record3 = train_transcript_stage(TinyRecogniser(13, len(ALPHABET) + 1), changed, readers, inputs, max_seconds=3.0,
                                     shuffle=torch_shuffle(0), seed=0, cache_dir=tmp_path, observer=NULL_OBSERVER,
                                     label="test")
    assert not record3["cached"] and len(list((tmp_path / "stages").glob("transcript-*.pt"))) == 3


def test_the_stage_refuses_transcripts_or_outputs_that_do_not_fit_the_alphabet(readers: Corpus) -> None:
    def run(alphabet: str, outputs: int) -> None:
        stage = Stage(corpus="librispeech-like", target="transcript", alphabet=alphabet, epochs=1)
        train_transcript_stage(TinyRecogniser(13, outputs), stage, readers, _inputs(readers), max_seconds=3.0,
                               shuffle=torch_shuffle(0), seed=0, cache_dir=None, observer=NULL_OBSERVER, label="test")

    with pytest.raises(CorpusError, match="outside the model's alphabet"):
        run("ab", 3)
    with pytest.raises(ModelError, match="transcribe gives 3 classes per frame"):
        run(ALPHABET, 3)


def test_stacked_features_align_their_parts_frame_by_frame() -> None:
    spectrogram = Features(kind="spectrogram", n_fft=320, hop_length=160, window="hamming")
    mfcc = Features(kind="mfcc", n_fft=320, hop_length=160, n_mels=40, n_mfcc=13, pitch=True, deltas=1)

    def frontend(features: Features) -> FrontEnd:
        return FrontEnd(FrontEndSpec(features=features, layout=["batch", "freq", "time"], emotions=[]))

    t = torch.arange(16_000) / 16_000
    voiced = (torch.sin(2 * np.pi * 150 * t) + 0.5 * torch.sin(2 * np.pi * 300 * t)).unsqueeze(0) * 0.1
    stacked = frontend(Features(kind="stack", hop_length=160, parts=[spectrogram, mfcc]))(voiced)
    alone = frontend(spectrogram)(voiced)
    assert stacked.shape == (1, 161 + 28, 101)
    assert torch.equal(stacked[:, :161], alone)  # the spectrogram rows are the spectrogram, bit for bit
    pitch = stacked[0, 161 + 13, 5:-5]
    assert torch.allclose(pitch, torch.full_like(pitch, 1.5), atol=0.03)  # 150 Hz, in 100 Hz units
    with pytest.raises(ValueError, match="share one hop_length"):
        Features(kind="stack", parts=[spectrogram, replace_hop(mfcc, 80)])
    with pytest.raises(ValueError, match="needs parts"):
        Features(kind="stack")


def replace_hop(features: Features, hop: int) -> Features:
    return features.model_copy(update={"hop_length": hop})
