"""P3's ASR-transfer zoo entries: the recogniser, the four SER variants, their front-ends and recipes
(tiny corpora here: one small honest training per model; the real trainings are marked slow)."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from ser_audit.corpus.interface import Corpus
from ser_audit.corpus.synthetic.voice import CONSONANT_SYMBOLS, VOWEL_SYMBOLS
from ser_audit.frontend.features import FrontEnd
from ser_audit.models.eager import EagerTorchModel
from ser_audit.models.loading import load_checkpoint
from ser_audit.models.reference import ReferenceModel
from ser_audit.models.training import train_reference
from ser_audit.models.zoo import load_or_train, reference_models
from ser_audit.testing import tiny_corpus
from ser_audit_reference.asr import (
    ALPHABET,
    ASR_BASELINE_ENTRY,
    ASR_CONFIG,
    ASR_MP3_ENTRY,
    ASR_PROGRESSIVE2_ENTRY,
    ASR_RNN2_ENTRY,
    P3_STACK,
    AsrTransfer,
)

EMOTIONS = ["neutral", "angry", "sad", "happy"]
ENTRIES = [ASR_BASELINE_ENTRY, ASR_MP3_ENTRY, ASR_RNN2_ENTRY, ASR_PROGRESSIVE2_ENTRY]
TRANSFER = ENTRIES[1:]
# The recurrent layers each model runs (and so the taps a leakage study gets).
GRU_TAPS = {
    "asr-baseline": ["baseline.gru1", "baseline.gru2"],
    "asr-mp-3": ["asr.gru1", "asr.gru2", "asr.gru3"],
    "asr-rnn-2": ["asr.gru1", "asr.gru2", "rnn"],
    "asr-progressive-2": ["asr.gru1", "asr.gru2", "baseline.gru1", "baseline.gru2"],
}


def test_the_recogniser_spells_the_synthesisers_symbols() -> None:
    assert sorted(ALPHABET) == sorted(" " + "".join(CONSONANT_SYMBOLS) + "".join(VOWEL_SYMBOLS))
    assert len(ALPHABET) == 15 and ALPHABET[0] == " "


def test_p3s_front_end_is_a_161_bin_power_spectrogram_beside_mfcc_and_pitch() -> None:
    features = FrontEnd(P3_STACK.model_copy(update={"emotions": EMOTIONS}))(torch.randn(2, 48_000) * 0.05)
    assert features.shape == (2, 161 + 28, 301)  # 20 ms Hamming windows every 10 ms over 3 s
    spectrogram = P3_STACK.features.parts[0]
    assert (spectrogram.n_fft, spectrogram.win_length, spectrogram.window, spectrogram.power) == (320, 320, "hamming", 2.0)
    baseline = FrontEnd(ASR_BASELINE_ENTRY.frontend.model_copy(update={"emotions": EMOTIONS}))(torch.randn(2, 48_000))
    assert baseline.shape == (2, 28, 301)


def test_the_zoo_lists_p3s_four_entries_with_their_recipes_and_factors() -> None:
    models = reference_models(strict=True)
    for entry in ENTRIES:
        assert models[entry.name] is entry and entry.paper.startswith("P3")
    assert [s.target for s in ASR_BASELINE_ENTRY.stages] == ["emotion"]
    for entry in TRANSFER:
        recogniser, emotion = entry.stages
        assert (recogniser.target, recogniser.corpus, recogniser.shares) == ("transcript", "librispeech-like", ("asr.*",))
        assert emotion.target == "emotion" and [g.patterns for g in emotion.groups if g.frozen] == [("asr.*",)]
        assert (emotion.optimiser, emotion.clip_grad_norm) == ("adam", 15.0)  # P3's recipe (its rate: 1e-4, here 1e-3)
        assert entry.stages[0] == TRANSFER[0].stages[0]  # one recogniser stage, so one cached recogniser
        assert entry.config["asr_hidden"] == ASR_CONFIG["asr_hidden"] and "DeepSpeech 2: 800" in entry.description


def test_every_variant_draws_the_same_initial_recogniser() -> None:
    states = []
    for entry in TRANSFER:
        torch.manual_seed(0)
        module = entry.build(n_classes=4, **entry.config)
        states.append({k: v for k, v in module.state_dict().items() if k.startswith("asr.")})
    assert all(states[0].keys() == s.keys() and all(torch.equal(states[0][k], s[k]) for k in s) for s in states[1:])


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.name)
def test_every_gru_layer_the_model_runs_is_a_default_tap(entry: ReferenceModel) -> None:
    torch.manual_seed(0)
    module = entry.build(n_classes=4, **entry.config)
    spec = entry.frontend.model_copy(update={"emotions": EMOTIONS})
    layers = EagerTorchModel(module, spec).default_taps()
    recurrent = [layer.name for layer in layers if layer.kind == "GRU"]
    assert sorted(recurrent) == sorted(GRU_TAPS[entry.name])
    assert all(layer.shape[-1] > 1 for layer in layers)


def test_variants_read_the_asr_layer_p3_names() -> None:
    torch.manual_seed(0)
    model = AsrTransfer(4, variant="mp", layer=3, **{k: v for k, v in ASR_CONFIG.items()}).eval()
    features = torch.randn(2, 189, 301)
    with torch.no_grad():
        third = model.asr.sequences(features[:, :161], 3)[-1]
        expected = model.classifier(model.pooled_norm(third.mean(1)))
        assert torch.allclose(model(features), expected, atol=1e-6)
        assert model.transcribe(features).shape == (2, 76, len(ALPHABET) + 1)
        # MP-3 and RNN-2 read the spectrogram rows only.
        changed = features.clone()
        changed[:, 161:] = 0.0
        assert torch.equal(model(features), model(changed))


@pytest.fixture(scope="module")
def corpora(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Corpus]:
    folder = tmp_path_factory.mktemp("p3")
    return {
        "iemocap-like": tiny_corpus(folder / "iemocap", per_speaker=4, seed=0),
        "librispeech-like": tiny_corpus(folder / "librispeech", preset="librispeech-like", per_speaker=2, seed=0),
    }


def _tiny(entry: ReferenceModel) -> ReferenceModel:
    return replace(entry, training=tuple(replace(stage, epochs=1, batch_size=16) for stage in entry.stages))


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.name)
def test_tiny_training_keeps_the_recogniser_frozen_after_its_stage(
    entry: ReferenceModel, corpora: dict[str, Corpus], tmp_path: Path
) -> None:
    built: list[dict[str, torch.Tensor]] = []

    def build(n_classes: int, **config: object) -> torch.nn.Module:
        module = entry.build(n_classes=n_classes, **config)
        built.append({k: v.clone() for k, v in module.state_dict().items()})
        return module

    recogniser_after_stage: dict[str, torch.Tensor] = {}
    trained = train_reference(replace(_tiny(entry), build=build), cache_dir=tmp_path, corpora=corpora)
    metrics = trained.metrics
    assert 0.0 <= metrics["held_out_uar"] <= 1.0 and metrics["n_test"] == 8
    final = trained.module.state_dict()
    initial = built[0]
    head = [k for k in final if k.startswith("classifier.")]
    assert head and all(not torch.equal(initial[k], final[k]) for k in head)  # the emotion head trained
    if entry is ASR_BASELINE_ENTRY:
        assert [s["target"] for s in metrics["stages"]] == ["emotion"]
        return
    assert len(built) == 1  # one module through both stages: same classes, no rebuild
    recogniser, emotion = metrics["stages"]
    assert recogniser["target"] == "transcript" and recogniser["held_out_session"] == "test"
    assert 0.0 <= recogniser["symbol_error_rate"] and 0.7 < recogniser["baseline_symbol_error_rate"] < 1.0
    # The recogniser as its stage left it, from the stage cache, equals the final model's: frozen after.
    (cached,) = (tmp_path / "stages").glob("transcript-*.pt")
    recogniser_after_stage = torch.load(str(cached), weights_only=True)["state"]
    assert recogniser_after_stage.keys() == {k for k in final if k.startswith("asr.")}
    assert all(torch.equal(recogniser_after_stage[k], final[k]) for k in recogniser_after_stage)
    assert any(not torch.equal(initial[k], final[k]) for k in recogniser_after_stage)  # and it did train


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("SER_AUDIT_TRAIN_ZOO"),
                    reason="trains P3's recogniser and four SER variants (about an hour on 2 cores); "
                    "SER_AUDIT_TRAIN_ZOO=1 runs it")
@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.name)
def test_p3_models_learn_emotion_on_held_out_speakers(entry: ReferenceModel, cache_dir: Path) -> None:
    model = load_checkpoint(load_or_train(entry.name, cache_dir=cache_dir, seed=0))
    metrics = model.training
    assert 0.40 <= metrics["held_out_uar"] < 0.95, metrics
    assert metrics["n_test"] == 80 and metrics["held_out_session"] == "Ses05"
    if entry is not ASR_BASELINE_ENTRY:
        recogniser = metrics["stages"][0]
        # Clearly learnt: well under the rate of always answering the commonest symbol.
        assert recogniser["symbol_error_rate"] < 0.6 * recogniser["baseline_symbol_error_rate"], recogniser
        assert np.isfinite(recogniser["symbol_error_rate"])
