"""P2's ResNet-50 and P0's LLD-trained VGG-16: architecture, front-ends, and training (tiny
corpora here; the real training is marked slow)."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from ser_audit.frontend.features import FrontEnd
from ser_audit.models.eager import EagerTorchModel
from ser_audit.models.loading import load_checkpoint
from ser_audit.models.reference import ReferenceModel
from ser_audit.models.training import train_reference, write_checkpoint
from ser_audit.models.zoo import load_or_train, reference_models
from ser_audit.testing import tiny_corpus
from ser_audit.testing.shapes import output_shapes
from ser_audit_reference.resnet50 import LOG_MEL_373, RESNET50_ENTRY, ResNet50
from ser_audit_reference.vgg16 import LLD_P0, VGG16, VGG16_ENTRY, VGG16_LLD_ENTRY

EMOTIONS = ["neutral", "angry", "sad", "happy"]
RESNET50_BLOCKS = [f"layer{s}.{b}" for s, count in zip((1, 2, 3, 4), (3, 4, 6, 3)) for b in range(count)]


def test_full_width_resnet50_is_the_standard_network_on_p2s_input() -> None:
    """Width 1: the standard ResNet-50's 23.5 M parameters (one input channel, 4 classes) and its
    maps on P2's 64 x 373 log-mel input."""
    module = ResNet50(4)
    parameters = sum(p.numel() for p in module.parameters())
    assert 23.45e6 < parameters < 23.56e6  # torchvision's 25.56 M less its 1000-class head and RGB stem
    assert len([m for m in module.modules() if isinstance(m, nn.Conv2d)]) == 49 + 4  # 49 convs + 4 projection shortcuts
    shapes = output_shapes(module, torch.zeros(1, 1, 64, 373), ["maxpool", "layer1", "layer2", "layer3", "layer4"])
    assert shapes["maxpool"] == (1, 64, 16, 94) and shapes["layer1"] == (1, 256, 16, 94)
    assert shapes["layer2"] == (1, 512, 8, 47) and shapes["layer3"] == (1, 1024, 4, 24) and shapes["layer4"] == (1, 2048, 2, 12)


def test_p2_front_end_pads_and_cuts_to_373_frames() -> None:
    frontend = FrontEnd(LOG_MEL_373.model_copy(update={"emotions": EMOTIONS}))
    assert LOG_MEL_373.num_samples == 372 * 256
    assert frontend(torch.zeros(2, LOG_MEL_373.num_samples)).shape == (2, 1, 64, 373)


def test_every_resnet50_block_is_a_default_tap() -> None:
    spec = LOG_MEL_373.model_copy(update={"emotions": EMOTIONS})
    taps = [layer.name for layer in EagerTorchModel(ResNet50(4, **RESNET50_ENTRY.config), spec).default_taps()]
    assert [name for name in taps if name.startswith("layer")] == RESNET50_BLOCKS


def test_lld_target_is_vgg16_on_p0s_32_descriptors() -> None:
    """The LLD twin differs from vgg16 in its front-end and the input standardisation it needs, nothing else."""
    assert replace(VGG16_LLD_ENTRY, name="vgg16", description=VGG16_ENTRY.description, frontend=VGG16_ENTRY.frontend,
                   config=VGG16_ENTRY.config, version=VGG16_ENTRY.version) == VGG16_ENTRY
    assert VGG16_LLD_ENTRY.config == {**VGG16_ENTRY.config, "standardised_rows": 32}
    features = FrontEnd(LLD_P0.model_copy(update={"emotions": EMOTIONS}))(torch.randn(2, 48_000) * 0.1)
    assert features.shape == (2, 1, 32, 298)  # 16 descriptors + deltas; 25 ms windows every 10 ms over 3 s
    module = VGG16(4, **VGG16_LLD_ENTRY.config)
    shapes = output_shapes(module, features, ["input_norm", "block1.pool", "block5.pool", "classifier"])
    assert shapes["input_norm"] == (2, 32, 298) and shapes["block1.pool"][2:] == (16, 149) and shapes["block5.pool"][2] == 1
    # Each descriptor row comes out standardised over the batch and frames, whatever its scale.
    module.train()
    scaled = features * torch.logspace(-3, 2, 32).view(1, 1, 32, 1)
    normalised = module.input_norm(scaled.squeeze(1))  # type: ignore[misc]
    assert torch.allclose(normalised.mean(dim=(0, 2)), torch.zeros(32), atol=1e-4)
    assert "input_norm" not in dict(VGG16(4, **VGG16_ENTRY.config).named_modules())


def test_the_zoo_lists_resnet50_and_the_lld_target() -> None:
    models = reference_models(strict=True)
    assert models["resnet50"].paper.startswith("P2") and models["resnet50"].config == {"width": 0.125}
    assert models["vgg16-lld"].frontend.features.kind == "lld" and models["vgg16-lld"].frontend.features.deltas == 1


@pytest.mark.parametrize("entry", [RESNET50_ENTRY, VGG16_LLD_ENTRY], ids=lambda e: e.name)
def test_tiny_training_learns_and_writes_a_loadable_checkpoint(entry: ReferenceModel, tmp_path: Path) -> None:
    """Three epochs on a tiny corpus: every weight moves, the input standardisation (LLD) tracks
    the descriptors' statistics, and the checkpoint reloads to the same logits."""
    corpus = tiny_corpus(tmp_path / "corpus", per_speaker=4, seed=0)
    tiny = replace(entry, training=replace(entry.stages[0], epochs=3, batch_size=8))
    torch.manual_seed(0)
    initial = entry.build(n_classes=4, **entry.config).state_dict()
    trained = train_reference(tiny, cache_dir=tmp_path, corpora={"iemocap-like": corpus})
    state = trained.module.state_dict()
    moved = [name for name, value in state.items() if value.dtype.is_floating_point and not torch.equal(value, initial[name])]
    weights = [name for name, _ in trained.module.named_parameters()]
    assert set(weights) <= set(moved)
    if "input_norm.running_mean" in state:
        assert float(state["input_norm.running_var"].max() / state["input_norm.running_var"].min()) > 10
    metrics = trained.metrics
    assert metrics["n_test"] > 0 and 0.0 <= metrics["held_out_uar"] <= 1.0
    write_checkpoint(trained, tmp_path / "model.ckpt")
    loaded = load_checkpoint(tmp_path / "model.ckpt")
    assert loaded.frontend.features == entry.frontend.features
    features = FrontEnd(loaded.frontend)(torch.randn(2, loaded.frontend.num_samples or 16_000) * 0.1)
    with torch.no_grad():
        assert torch.allclose(loaded.module.eval()(features), trained.module.eval()(features), atol=1e-5)


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("SER_AUDIT_TRAIN_ZOO"),
                    reason="trains ResNet-50 and the LLD VGG-16 from scratch (1-2 minutes each on 2 cores); "
                    "SER_AUDIT_TRAIN_ZOO=1 runs it")
@pytest.mark.parametrize("entry", [RESNET50_ENTRY, VGG16_LLD_ENTRY], ids=lambda e: e.name)
def test_p2_and_p0_models_learn_emotion_on_held_out_speakers(entry: ReferenceModel, cache_dir: Path) -> None:
    metrics = load_checkpoint(load_or_train(entry.name, cache_dir=cache_dir, seed=0)).training
    assert metrics is not None
    assert 0.40 <= metrics["held_out_uar"] < 0.95, metrics
    assert metrics["n_test"] == 80 and np.isfinite(metrics["held_out_accuracy"])
