"""P1's ResNet-20 zoo entries: the architecture, the front-end, the residual adapters, and the
speaker -> emotion recipes (tiny corpora here; the real training is marked slow)."""

from __future__ import annotations

import copy
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from ser_audit.corpus.interface import Corpus
from ser_audit.frontend.features import FrontEnd
from ser_audit.models.eager import EagerTorchModel
from ser_audit.models.loading import load_checkpoint
from ser_audit.models.loop import stage_optimiser
from ser_audit.models.reference import ReferenceModel
from ser_audit.models.training import train_reference, write_checkpoint
from ser_audit.models.zoo import checkpoint_path, load_or_train, reference_models
from ser_audit.runner.models import reference_model_table
from ser_audit.testing import tiny_corpus
from ser_audit.testing.shapes import output_shapes
from ser_audit_reference.resnet20 import (
    CONFIG,
    RESNET20_ADAPTER_ENTRY,
    RESNET20_ENTRY,
    RESNET20_FINETUNE_ENTRY,
    SPECTROGRAM_P1,
    AdaptedConv2d,
    ResNet20,
)

EMOTIONS = ["neutral", "angry", "sad", "happy"]
BLOCKS = [f"stage{s}.{b}" for s in (1, 2, 3) for b in range(3)]


def test_full_size_resnet20_has_p1s_maps_on_p1s_input() -> None:
    """Width 1 and stem stride 1 on P1's 400 x 200 spectrogram give the paper's map sizes."""
    shapes = output_shapes(ResNet20(4), torch.zeros(1, 1, 400, 200), ["conv1", "maxpool", "stage1", "stage2", "stage3", "fc"])
    assert shapes["conv1"] == (1, 32, 400, 200) and shapes["maxpool"] == (1, 32, 200, 100)
    assert shapes["stage1"][2:] == (100, 50) and shapes["stage2"][2:] == (50, 25) and shapes["stage3"] == (1, 128, 25, 13)
    assert shapes["stage1"][1] == 64 and shapes["stage2"][1] == 128  # the stride-2 conv doubles into the next stage
    assert shapes["fc"] == (1, 256)


def test_zoo_scale_resnet20_on_the_p1_front_end() -> None:
    frontend = FrontEnd(SPECTROGRAM_P1.model_copy(update={"emotions": EMOTIONS}))
    features = frontend(torch.randn(3, 32_000) * 0.1)
    assert features.shape == (3, 1, 161, 201)  # 0-4 kHz at 25 Hz, 2 s at 10 ms
    assert 0.0 <= float(features.min()) and float(features.max()) == pytest.approx(1.0)  # mu-law of peak-scaled magnitudes
    shapes = output_shapes(ResNet20(4, **CONFIG), features, ["maxpool", *BLOCKS, "classifier"])
    assert shapes["maxpool"] == (3, 8, 41, 51) and shapes["stage3.2"] == (3, 32, 6, 7) and shapes["classifier"] == (3, 4)
    assert [shapes[f"stage{s}.2"][1] for s in (1, 2, 3)] == [16, 32, 32]


def test_every_block_of_every_stage_is_a_default_tap() -> None:
    torch.manual_seed(0)
    spec = SPECTROGRAM_P1.model_copy(update={"emotions": EMOTIONS})
    taps = [layer.name for layer in EagerTorchModel(ResNet20(4, **CONFIG, adapters=True), spec).default_taps()]
    assert taps[0] == "maxpool" and taps[-1] == "fc_relu"
    assert [name for name in taps if name.startswith("stage")] == BLOCKS


def test_zero_adapters_leave_the_network_unchanged() -> None:
    """Adapters start at zero and draw no random numbers: same seed, same weights, same outputs."""
    torch.manual_seed(0)
    plain = ResNet20(4, **CONFIG)
    torch.manual_seed(0)
    adapted = ResNet20(4, **CONFIG, adapters=True)
    state = adapted.state_dict()
    assert all(torch.equal(value, state[name]) for name, value in plain.state_dict().items())
    adapters = {name: value for name, value in state.items() if name not in plain.state_dict()}
    assert len(adapters) == 18 and all(name.endswith("adapter") and not value.any() for name, value in adapters.items())
    features = torch.randn(2, 1, 161, 201)
    with torch.no_grad():
        assert torch.equal(plain.eval()(features), adapted.eval()(features))
    conv = AdaptedConv2d(3, 5, stride=2)
    nn.init.normal_(conv.adapter)
    x = torch.randn(1, 3, 8, 8)
    expected = nn.functional.conv2d(x, conv.weight, stride=2, padding=1) + nn.functional.conv2d(x, conv.adapter, stride=2)
    assert torch.allclose(conv(x), expected, atol=1e-6)  # f(x) = w * x + alpha * x


def test_adaptation_trains_only_adapters_batch_norms_and_head() -> None:
    module = ResNet20(4, **CONFIG, adapters=True)
    pretraining, adaptation = RESNET20_ADAPTER_ENTRY.stages
    stage_optimiser(module, pretraining)
    assert {name for name, p in module.named_parameters() if not p.requires_grad} == {
        name for name, _ in module.named_parameters() if name.endswith("adapter")}
    for parameter in module.parameters():
        parameter.requires_grad_(True)
    stage_optimiser(module, adaptation)
    trained = {name for name, p in module.named_parameters() if p.requires_grad}
    kinds = {name.split(".")[-1] if name.endswith("adapter") else type(module.get_submodule(name.rsplit(".", 1)[0])).__name__
             for name in trained}
    assert kinds == {"adapter", "BatchNorm2d", "Linear"}
    assert {"fc.weight", "classifier.weight", "bn1.weight", "stage2.2.shortcut.1.weight"} <= trained
    assert adaptation.optimiser == "sgd" and adaptation.nesterov and adaptation.momentum == 0.9


def test_the_zoo_lists_p1s_three_entries_with_their_factors() -> None:
    models = reference_models(strict=True)
    for name in ("resnet20", "resnet20-finetune", "resnet20-adapter"):
        entry = models[name]
        assert entry.config["width"] == 0.25 and entry.config["stem_stride"] == 2 and "640-point FFT" in entry.description
    assert [s.target for s in models["resnet20"].stages] == ["emotion"]
    assert [(s.target, s.corpus) for s in models["resnet20-finetune"].stages] == [
        ("speaker", "voxceleb-like"), ("emotion", "iemocap-like")]
    finetune, adapter = RESNET20_FINETUNE_ENTRY.stages, RESNET20_ADAPTER_ENTRY.stages
    assert replace(adapter[0], groups=()) == finetune[0] and replace(adapter[1], groups=()) == finetune[1]


@pytest.fixture(scope="module")
def corpora(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Corpus]:
    folder = tmp_path_factory.mktemp("p1")
    speakers = tiny_corpus(folder / "voxceleb", preset="voxceleb-like", per_speaker=2, seed=0)
    return {
        "iemocap-like": tiny_corpus(folder / "iemocap", per_speaker=4, seed=0),
        "voxceleb-like": speakers.subset(range(24)),  # 12 speakers, 2 utterances each
    }


def _tiny(entry: ReferenceModel, built: list[tuple[nn.Module, dict[str, torch.Tensor]]]) -> ReferenceModel:
    def build(n_classes: int, **config: float) -> nn.Module:
        module = entry.build(n_classes=n_classes, **config)
        built.append((module, copy.deepcopy(module.state_dict())))
        return module

    stages = tuple(replace(stage, epochs=1, batch_size=16) for stage in entry.stages)
    return replace(entry, build=build, training=stages)


def test_adapter_stage_keeps_the_pretrained_filters_bit_for_bit(corpora: dict[str, Corpus], tmp_path: Path) -> None:
    adapter_built: list[tuple[nn.Module, dict[str, torch.Tensor]]] = []
    trained = train_reference(_tiny(RESNET20_ADAPTER_ENTRY, adapter_built), cache_dir=tmp_path, corpora=corpora)
    (speaker_model, initial), (final, _) = adapter_built[0], adapter_built[1]
    assert speaker_model.classifier.out_features == 12 and final.classifier.out_features == 4
    pretrained, adapted = speaker_model.state_dict(), trained.module.state_dict()
    filters = [name for name in adapted if name.endswith(("conv1.weight", "conv2.weight", "shortcut.0.weight"))]
    assert len(filters) == 1 + 18 + 3
    for name in filters:
        assert not torch.equal(initial[name], pretrained[name])  # speaker ID trained them
        assert torch.equal(pretrained[name], adapted[name])  # then they stayed frozen, bit for bit
    for name in (name for name in adapted if name.endswith("adapter")):
        assert not pretrained[name].any() and adapted[name].any()  # zero (frozen) in stage 1, trained in stage 2
    for name in ("bn1.weight", "stage3.2.bn2.weight", "fc.weight"):
        assert not torch.equal(pretrained[name], adapted[name])
    speaker_stage, emotion_stage = trained.metrics["stages"]
    assert [speaker_stage["target"], emotion_stage["target"]] == ["speaker", "emotion"]
    # One utterance of each of the 12 speakers held out of speaker ID, and measured on.
    assert speaker_stage["n_held_out"] == 12 and speaker_stage["n_train"] == 12 and speaker_stage["chance"] == 1 / 12
    assert 0.0 <= speaker_stage["held_out_accuracy"] <= 1.0 and "held_out_accuracy" not in emotion_stage
    # zoo list shows what each stage recorded, once the model is in the cache.
    write_checkpoint(trained, checkpoint_path(tmp_path, RESNET20_ADAPTER_ENTRY, 0))
    row = {row["name"]: row for row in reference_model_table(cache_dir=tmp_path)}["resnet20-adapter"]
    assert row["trained"] and row["training_corpus"] == trained.metrics["training_corpus"]
    listed_speaker, listed_emotion = row["stages"]
    assert listed_speaker["held_out_accuracy"] == speaker_stage["held_out_accuracy"] and listed_speaker["n_speakers"] == 12
    assert listed_emotion["corpus"] == "iemocap-like" and listed_emotion["n_train"] == emotion_stage["n_train"]

    # The same seed pretrains resnet20-finetune's backbone to the same values: one backbone recipe.
    finetune_built: list[tuple[nn.Module, dict[str, torch.Tensor]]] = []
    train_reference(_tiny(RESNET20_FINETUNE_ENTRY, finetune_built), cache_dir=tmp_path, corpora=corpora)
    finetune_pretrained = finetune_built[0][0].state_dict()
    assert all(torch.equal(value, pretrained[name]) for name, value in finetune_pretrained.items())


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("SER_AUDIT_TRAIN_ZOO"),
                    reason="trains three ResNet-20s from scratch (5-15 minutes on 2 cores); SER_AUDIT_TRAIN_ZOO=1 runs it")
@pytest.mark.parametrize("entry", [RESNET20_ENTRY, RESNET20_FINETUNE_ENTRY, RESNET20_ADAPTER_ENTRY], ids=lambda e: e.name)
def test_p1_models_learn_emotion_on_held_out_speakers(entry: ReferenceModel, cache_dir: Path) -> None:
    model = load_checkpoint(load_or_train(entry.name, cache_dir=cache_dir, seed=0))
    metrics = model.training
    assert 0.40 <= metrics["held_out_uar"] < 0.95, metrics
    assert metrics["n_test"] == 80 and metrics["held_out_session"] == "Ses05"
    assert [s["target"] for s in metrics["stages"]] == [s.target for s in entry.stages]
    assert np.isfinite(metrics["held_out_accuracy"])
