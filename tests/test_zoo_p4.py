"""P4's eResNet, TwoChannel and plain ResNet: the architecture, the random crops and references of
training, the fixed test-time reference, robustness on either input, hardening and the
neutral-sample ablation (tiny corpora here; the real trainings run on request)."""

from __future__ import annotations

import copy
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from ser_audit.corpus.folds import speaker_disjoint_folds
from ser_audit.corpus.interface import Corpus
from ser_audit.errors import ConfigError
from ser_audit.frontend.features import FrontEnd
from ser_audit.leakage.ablation import reference_ablation
from ser_audit.models.eager import EagerTorchModel
from ser_audit.models.loading import load_checkpoint
from ser_audit.models.reference import ReferenceModel
from ser_audit.models.sampling import CorpusAudio, fallback_count, random_crop, reference_candidates, reference_rows
from ser_audit.models.training import train_reference, write_checkpoint
from ser_audit.models.zoo import checkpoint_path, load_or_train, reference_models
from ser_audit.robustness.evaluate import ProbeSettings, evaluation_set, probe_model
from ser_audit.robustness.hardening import HardeningRecipe, harden
from ser_audit_reference.p4 import (
    ERESNET_ENTRY,
    LOG_SPECTROGRAM_P4,
    RESNET_P4_ENTRY,
    TWOCHANNEL_ENTRY,
    WITH_REFERENCE,
    P4ResNet,
    fit_frames,
)

EMOTIONS = ["neutral", "angry", "sad", "happy"]
BLOCKS = [f"blocks.{k}" for k in range(8)]
ENTRIES = [ERESNET_ENTRY, TWOCHANNEL_ENTRY, RESNET_P4_ENTRY]


def _eager(conditioning: str) -> EagerTorchModel:
    torch.manual_seed(0)
    spec = (LOG_SPECTROGRAM_P4 if conditioning == "none" else WITH_REFERENCE).model_copy(update={"emotions": EMOTIONS})
    return EagerTorchModel(P4ResNet(4, width=0.25, conditioning=conditioning), spec)


def test_eresnet_taps_the_speaker_embedding_and_every_conditioned_block() -> None:
    model = _eager("embedding")
    taps = [layer.name for layer in model.default_taps()]
    assert [name for name in taps if name.startswith("blocks.")] == BLOCKS
    assert [name for name in taps if name.startswith("embedding.blocks.")] == [f"embedding.blocks.{k}" for k in range(4)]
    embedding = {layer.name: layer for layer in model.layers()}["embedding.linear"]
    # The embedding is a vector read by the two projections of each of the 8 blocks: a default tap.
    assert "embedding.linear" in taps and embedding.shape == (1, 32) and embedding.readers == 16
    assert taps[-1] == "fc_relu"
    for conditioning in ("channel", "none"):
        plain = [layer.name for layer in _eager(conditioning).default_taps()]
        assert [name for name in plain if name.startswith("blocks.")] == BLOCKS and "embedding.linear" not in plain


def test_the_projected_embedding_is_added_after_both_convs_of_every_block() -> None:
    torch.manual_seed(0)
    module = P4ResNet(4, width=0.25, conditioning="embedding").eval()
    features, one, other = torch.randn(2, 1, 201, 150), torch.randn(2, 1, 201, 90), torch.randn(2, 1, 201, 120)
    with torch.no_grad():
        assert not torch.allclose(module(features, one), module(features, other))  # the reference matters
        for block in module.blocks:
            for projection in (block.project1, block.project2):
                projection.weight.zero_()
                projection.bias.zero_()
        assert torch.equal(module(features, one), module(features, other))  # ... only through the projections
    assert sum(name.endswith(("project1", "project2")) for name, _ in module.named_modules()) == 16
    assert len(module.embedding.blocks) == 4 and len(module.blocks) == 8


def test_twochannel_stacks_the_reference_cut_or_repeated_to_the_utterance() -> None:
    module = P4ResNet(4, width=0.25, conditioning="channel").eval()
    assert module.stem[0].in_channels == 2
    reference = torch.arange(5.0).reshape(1, 1, 1, 5)
    assert fit_frames(reference, 3).flatten().tolist() == [0, 1, 2]
    assert fit_frames(reference, 7).flatten().tolist() == [0, 1, 2, 3, 4, 0, 1]
    with torch.no_grad():
        assert module(torch.randn(1, 1, 201, 140), torch.randn(1, 1, 201, 60)).shape == (1, 4)


def test_the_front_end_is_p4s_log_spectrogram_with_per_segment_peak_normalisation() -> None:
    frontend = FrontEnd(WITH_REFERENCE.model_copy(update={"emotions": EMOTIONS}))
    signal = torch.randn(1, 16_000) * 0.1
    features = frontend(signal)
    assert features.shape == (1, 1, 201, 101)  # 25 ms (400-point) window, 10 ms hop, 1 s
    assert (frontend(signal * 7.0) - features).abs().max() < 1e-2  # the segment's peak is divided out
    unnormalised = FrontEnd(WITH_REFERENCE.model_copy(update={
        "emotions": EMOTIONS, "features": WITH_REFERENCE.features.model_copy(update={"peak_normalise": False})}))
    shift = unnormalised(signal * 7.0) - unnormalised(signal)
    assert float(shift.median()) == pytest.approx(2 * np.log(7.0), abs=1e-2)  # log power, without it
    assert WITH_REFERENCE.duration_s is None and [e.source for e in WITH_REFERENCE.extra_inputs] == ["neutral_same_speaker"]


@pytest.fixture(scope="module")
def corpus(small_corpus: Corpus) -> Corpus:
    return small_corpus


def test_the_fixed_reference_is_a_neutral_utterance_of_the_speaker_never_itself(corpus: Corpus) -> None:
    candidates = reference_candidates(corpus)
    for choice in range(3):
        for index, row in enumerate(reference_rows(corpus, choice=choice)):
            chosen, utterance = corpus.utterances[row], corpus.utterances[index]
            assert row != index and chosen.emotion == "neutral" and chosen.speaker == utterance.speaker
            assert row == candidates[index][choice % len(candidates[index])]
    assert not np.array_equal(reference_rows(corpus, choice=0), reference_rows(corpus, choice=1))


def test_a_speaker_without_another_neutral_utterance_gets_another_of_its_utterances(corpus: Corpus) -> None:
    speaker = corpus.utterances[0].speaker
    lone = next(i for i, u in enumerate(corpus) if u.speaker == speaker and u.emotion == "neutral")
    kept = [i for i, u in enumerate(corpus) if u.speaker != speaker or u.emotion != "neutral" or i == lone]
    sparse = corpus.subset(kept)
    rows = reference_rows(sparse)
    for index, utterance in enumerate(sparse):
        assert rows[index] != index and sparse.utterances[rows[index]].speaker == utterance.speaker
        if utterance.speaker != speaker or utterance.emotion != "neutral":
            assert sparse.utterances[rows[index]].emotion == "neutral"
    assert fallback_count(sparse) == 1 and fallback_count(corpus) == 0


def test_training_draws_random_crops_and_random_references(corpus: Corpus) -> None:
    # Each "waveform" is its row number, so a batch shows which utterances it was cut from.
    signals = [np.full(100 + 10 * k, float(k), dtype=np.float32) for k in range(len(corpus))]
    audio = CorpusAudio(signals, reference_candidates(corpus), 1, nn.Identity())
    rng = np.random.default_rng(0)
    drawn: dict[int, set[int]] = {}
    for _ in range(30):
        primary, reference = audio.batch([0, 1, 2], crop_samples=50, random_reference=True, rng=rng)
        assert primary.shape == reference.shape == (3, 50) and primary[:, 0].tolist() == [0.0, 1.0, 2.0]
        for row, value in zip([0, 1, 2], reference[:, 0].tolist()):
            assert int(value) in reference_candidates(corpus)[row]
            drawn.setdefault(row, set()).add(int(value))
    assert all(len(values) > 1 for values in drawn.values())  # drawn anew, not a fixed choice
    fixed = audio.batch([0], choice=0)[1]
    assert int(fixed[0, 0]) == reference_rows(corpus)[0]  # outside training: the documented choice
    short = random_crop(np.arange(3.0), 7, rng)
    assert len(short) == 7 and set(short.tolist()) <= {0.0, 1.0, 2.0}  # repeated, never zero-padded


def _tiny(entry: ReferenceModel) -> ReferenceModel:
    return replace(entry, config={**entry.config, "width": 0.125},
                   training=replace(entry.stages[-1], epochs=3, batch_size=8))


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.name)
def test_each_p4_model_trains_on_crops_and_is_tested_on_whole_utterances(entry: ReferenceModel, corpus: Corpus,
                                                                         tmp_path: Path) -> None:
    torch.manual_seed(0)
    initial = entry.build(n_classes=4, **_tiny(entry).config).state_dict()
    trained = train_reference(_tiny(entry), cache_dir=tmp_path, corpora={"iemocap-like": corpus})
    changed = [name for name, value in trained.module.state_dict().items()
               if value.dtype.is_floating_point and not torch.equal(value, initial[name])]
    assert "classifier.weight" in changed and "stem.0.weight" in changed
    if entry is ERESNET_ENTRY:
        assert "blocks.7.project2.weight" in changed and "embedding.linear.weight" in changed
    metrics = trained.metrics
    assert metrics["training_crops"].startswith("random 2 s crops") and metrics["test_input"] == "whole utterances"
    assert 0.0 <= metrics["held_out_uar"] <= 1.0 and metrics["n_test"] > 0
    if entry.frontend.extra_inputs:
        assert "random neutral utterance of the same speaker" in metrics["training_reference"]
        assert metrics["test_reference"].startswith("neutral reference = candidate 0")
    else:
        assert "test_reference" not in metrics
    write_checkpoint(trained, checkpoint_path(tmp_path, entry, 0))
    loaded = load_checkpoint(checkpoint_path(tmp_path, entry, 0))
    assert loaded.frontend.duration_s is None and loaded.training["held_out_uar"] == metrics["held_out_uar"]


class _IgnoresReference(nn.Module):
    """A two-input model whose output does not depend on its second input."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(201, 4)

    def forward(self, features: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        return self.head(features.mean(dim=(1, 3)))


def _with_training(model: EagerTorchModel, corpus: Corpus) -> EagerTorchModel:
    model.training = {"held_out_session": sorted({u.session for u in corpus})[-1], "training_corpus": corpus.name}
    return model


def test_robustness_attacks_the_primary_input_or_with_perturb_reference_the_neutral_sample(corpus: Corpus) -> None:
    eresnet = _with_training(_eager("embedding"), corpus)
    data = evaluation_set(eresnet, corpus)
    assert data.reference is not None and data.reference.startswith("neutral reference = candidate 0")
    lengths = {batch.shape[-1] for batch in data.audio}
    assert len(lengths) > 1  # whole utterances of their own lengths, not padded to one
    frontend = FrontEnd(eresnet.frontend)
    with torch.no_grad():  # batch-norm statistics of these inputs, so that an untrained model's predictions vary
        eresnet.module.train()
        for features, others in zip(data.features, data.extra):
            eresnet.module(features, *others)
        eresnet.module.eval()
    for perturb in ("primary", "reference"):
        rows, _ = probe_model(eresnet.module, data, ProbeSettings(grid=(0.0, 1.0), pgd_eps=0.5, pgd_steps=3,
                                                                  perturb=perturb), frontend)
        assert rows[0].prediction_change_rate == 0.0 and rows[1].mean_linf > 0
        assert max(row.prediction_change_rate for row in rows[1:]) > 0  # either input moves eResNet
    blind = _with_training(EagerTorchModel(_IgnoresReference(), eresnet.frontend), corpus)
    rows, _ = probe_model(blind.module, data, ProbeSettings(grid=(0.0, 1.0), perturb="reference"), frontend)
    # No gradient reaches an input the model ignores: FGSM leaves it, and no prediction moves.
    assert all(row.prediction_change_rate == 0.0 for row in rows) and rows[1].mean_linf == 0.0
    single = _with_training(_eager("none"), corpus)
    with pytest.raises(ConfigError, match="--perturb reference"):
        probe_model(single.module, evaluation_set(single, corpus), ProbeSettings(grid=(0.0, 0.1), perturb="reference"),
                    FrontEnd(single.frontend))


def test_hardening_trains_a_two_input_variable_length_model(corpus: Corpus) -> None:
    model = _with_training(_eager("embedding"), corpus)
    before = copy.deepcopy(model.module.state_dict())
    harden(model.module, model, corpus, HardeningRecipe(method="vanilla", epochs=2, warmup_epochs=1, batch_size=8,
                                                        crop_s=0.5))
    after = model.module.state_dict()
    assert not torch.equal(before["blocks.3.project1.weight"], after["blocks.3.project1.weight"])
    assert not torch.equal(before["embedding.linear.weight"], after["embedding.linear.weight"])


def test_the_neutral_sample_ablation_varies_only_what_reads_the_reference(corpus: Corpus, tmp_path: Path) -> None:
    model = _with_training(_eager("embedding"), corpus)
    layers = [layer for layer in model.layers() if layer.name in ("embedding.linear", "stem.3", "blocks.7")]
    folds = speaker_disjoint_folds(corpus, n_folds=None, seed=0)
    ablation = reference_ablation(model, corpus, layers, folds, choices=3, cache_dir=None)
    rows = {row.layer: row for row in ablation.layers}
    assert len(ablation.choices) == 3 and len(ablation.uar) == 3 and ablation.uar_set.startswith("held-out session")
    assert rows["stem.3"].std == 0.0 and len(set(rows["stem.3"].leakage)) == 1  # the main stem never sees the reference
    assert rows["embedding.linear"].mean == pytest.approx(np.mean(rows["embedding.linear"].leakage))
    assert ablation.uar_std == pytest.approx(float(np.std(ablation.uar, ddof=1)))


def test_the_zoo_lists_p4s_three_entries_with_their_factors() -> None:
    models = reference_models(strict=True)
    for entry in ENTRIES:
        listed = models[entry.name]
        assert listed.config["width"] == 0.25 and listed.paper.startswith("P4")
        stage = listed.stages[-1]
        assert stage.optimiser == "sgd" and stage.class_weighted and stage.random_crop_s == 2.0
        assert stage.random_reference == bool(listed.frontend.extra_inputs)
    assert models["resnet-p4"].frontend.extra_inputs == []


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("SER_AUDIT_TRAIN_ZOO"),
                    reason="trains the three P4 models from scratch (1-4 minutes each on one thread); "
                           "SER_AUDIT_TRAIN_ZOO=1 runs it")
@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.name)
def test_p4_models_learn_emotion_on_held_out_speakers(entry: ReferenceModel, cache_dir: Path) -> None:
    model = load_checkpoint(load_or_train(entry.name, cache_dir=cache_dir, seed=0))
    metrics = model.training
    assert 0.40 <= metrics["held_out_uar"] < 0.95, metrics
    assert metrics["n_test"] == 80 and metrics["held_out_session"] == "Ses05"
    assert metrics["test_input"] == "whole utterances"


@pytest.mark.parametrize("flags, message", [
    (("--perturb", "reference"), "--perturb reference: the model has no reference input"),
    (("--perturb", "enrolment"), "--perturb"),
])
def test_perturb_reference_on_a_one_input_model_is_a_usage_error(run_cli, onnx_model, manifest, tmp_path, flags,
                                                                  message) -> None:
    result = run_cli("robustness", str(onnx_model), "--corpus", str(manifest), "--out", str(tmp_path / "r.json"),
                     "--quiet", *flags)
    assert result.code == 2, result.stderr
    assert message in result.stderr and result.stderr.count("\n") == 1
