"""``zoo:wav2vec2-ser``: a wav2vec 2.0-style encoder, CTC-pretrained, under SUPERB's weighted-sum emotion head
(tiny corpora here: one small honest training; the real training is marked slow)."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from ser_audit.corpus.interface import Corpus
from ser_audit.leakage.families import target_family
from ser_audit.models.eager import EagerTorchModel
from ser_audit.models.loading import load_checkpoint
from ser_audit.models.training import train_reference, write_checkpoint
from ser_audit.models.zoo import checkpoint_path, load_or_train, reference_models
from ser_audit.testing import tiny_corpus
from ser_audit_reference.wav2vec2 import FRONTEND, WAV2VEC2_SER_ENTRY, build

EMOTIONS = ["neutral", "angry", "sad", "happy"]
BLOCKS = [f"wav2vec2.encoder.layers.{i}" for i in range(4)]


def test_its_blocks_are_read_as_a_transformer_checkpoints_are() -> None:
    torch.manual_seed(0)
    model = EagerTorchModel(build(4), FRONTEND.model_copy(update={"emotions": EMOTIONS}))
    listed = [layer.name for layer in model.listed_layers()]
    assert listed == ["wav2vec2.feature_extractor", "wav2vec2.feature_projection", *BLOCKS,
                      "wav2vec2.encoder.layer_norm", "projector", "classifier"]
    assert [layer.name for layer in model.default_taps()] == [*BLOCKS, "projector"]
    assert target_family(model.layers(), model.operators()) == "transformer"
    assert model.forward(model.example_inputs(batch=2)).logits.shape == (2, 4)
    # 50 frames a second: 3 s give 149 CTC frames, enough for the synthetic readers' transcripts.
    assert build(4).transcribe(torch.randn(1, 48_000)).shape == (1, 149, 16)


def test_the_recipe_pretrains_with_ctc_then_trains_superbs_head_on_a_frozen_encoder() -> None:
    assert reference_models(strict=True)["wav2vec2-ser"] is WAV2VEC2_SER_ENTRY
    pretraining, emotion = WAV2VEC2_SER_ENTRY.stages
    assert (pretraining.target, pretraining.corpus) == ("transcript", "librispeech-like")
    assert emotion.target == "emotion" and [g.patterns for g in emotion.groups if g.frozen] == [("wav2vec2.*", "ctc_head.*")]
    module = build(4)
    states = module.wav2vec2(torch.randn(2, 48_000))
    assert len(states) == 5 and module.layer_weights.shape == (5,)  # the projection's output and every block's


@pytest.fixture(scope="module")
def corpora(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Corpus]:
    root = tmp_path_factory.mktemp("w2v-corpora")
    return {"iemocap-like": tiny_corpus(root / "emotion", per_speaker=6, seed=0),
            "librispeech-like": tiny_corpus(root / "speech", preset="librispeech-like", per_speaker=4, seed=1)}


@pytest.fixture(scope="module")
def tiny_trained(corpora, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The recipe, two epochs a stage, on tiny corpora, written where ``zoo:wav2vec2-ser`` looks for it."""
    cache = tmp_path_factory.mktemp("w2v-cache")
    recipe = replace(WAV2VEC2_SER_ENTRY, training=tuple(replace(stage, epochs=2) for stage in WAV2VEC2_SER_ENTRY.stages))
    trained = train_reference(recipe, cache_dir=cache, seed=0, corpora=corpora)
    write_checkpoint(trained, checkpoint_path(cache, WAV2VEC2_SER_ENTRY, 0))
    return cache


def test_training_records_both_stages_and_freezes_the_encoder(tiny_trained) -> None:
    model = load_checkpoint(checkpoint_path(tiny_trained, WAV2VEC2_SER_ENTRY, 0))
    stages = model.training["stages"]
    assert [stage["target"] for stage in stages] == ["transcript", "emotion"]
    assert model.frontend.features.kind == "waveform" and model.frontend.duration_s == 3.0
    torch.manual_seed(0)
    fresh = build(4)
    weights = dict(model.module.named_parameters())
    assert not torch.equal(weights["layer_weights"], fresh.layer_weights)  # the head trained


def test_quick_leakage_robustness_and_harden_on_the_zoo_entry(run_cli, tiny_trained, corpora, tmp_path) -> None:
    manifest = str(corpora["iemocap-like"].root / "manifest.csv")
    common = ("--cache-dir", str(tiny_trained), "--corpus", manifest, "--quiet")
    out = tmp_path / "leakage.json"
    result = run_cli("leakage", "zoo:wav2vec2-ser", "--quick", "--out", str(out), "--format", "json", *common)
    assert result.code == 0, result.stderr
    leakage = json.loads(out.read_text())["leakage"]
    assert {row["layer"] for row in leakage["results"] if row["attacker_design"] == "linear-probe"} >= set(BLOCKS)
    assert leakage["target_family"] == "transformer"
    # SUPERB's head reads every block: no block's downstream is a function of it alone, and the report says so.
    assert any("weighted" in skip["reason"] or "not a function" in skip["reason"] or "unavailable" in skip["reason"]
               for skip in leakage["skipped"] if skip["layer"] in BLOCKS)
    robust = run_cli("robustness", "zoo:wav2vec2-ser", "--domain", "waveform", "--eps", "0,0.005", "--pgd-steps", "2",
                     "--out", str(tmp_path / "robust.json"), *common)
    assert robust.code == 0, robust.stderr
    rows = json.loads((tmp_path / "robust.json").read_text())["robustness"]["results"]
    assert {row["gradient"] for row in rows} == {"white-box"} and rows[1]["snr_db"] is not None
    harden = run_cli("harden", "zoo:wav2vec2-ser", "--method", "vanilla", "--out", str(tmp_path / "hardened.onnx"),
                     "--epochs", "2", "--warmup-epochs", "1", *common)
    assert harden.code == 0, harden.stderr


@pytest.mark.skipif(not os.environ.get("SER_AUDIT_TRAIN_ZOO"),
                    reason="trains the encoder with CTC and the emotion head (minutes on 2 cores); SER_AUDIT_TRAIN_ZOO=1 "
                           "runs it")
def test_the_zoo_entry_learns_emotion_on_held_out_speakers(cache_dir: Path) -> None:
    model = load_checkpoint(load_or_train("wav2vec2-ser", cache_dir=cache_dir, seed=0))
    assert model.training["held_out_uar"] > 0.4  # chance: 0.25
    recogniser = model.training["stages"][0]
    assert recogniser["target"] == "transcript"
    assert np.isfinite(model.forward(model.example_inputs(batch=2)).logits).all()
