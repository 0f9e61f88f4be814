"""The shared training loop and the reference-model recipe contract: several inputs, stages,
frozen and re-rated parameter groups, class weights, gradient clipping, the learning-rate schedule."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch import nn

from ser_audit.corpus.interface import Corpus
from ser_audit.errors import ConfigError
from ser_audit.frontend.spec import ExtraInput, Features, FrontEndSpec
from ser_audit.models.eager import EagerTorchModel
from ser_audit.models.loop import (
    balanced_class_weights,
    classification_loss,
    run_epochs,
    stage_optimiser,
    torch_shuffle,
)
from ser_audit.models.training import train_reference
from ser_audit.models.zoo import ParameterGroup, ReferenceModel, Stage
from ser_audit.robustness.hardening import HardeningRecipe, harden
from ser_audit.testing import tiny_corpus

SPEC = FrontEndSpec(
    features=Features(kind="log_mel", n_fft=256, hop_length=128, n_mels=16),
    layout=["batch", "channel", "freq", "time"],
    duration_s=0.5,
    emotions=[],
)
TWO_INPUT_SPEC = SPEC.model_copy(update={"extra_inputs": [ExtraInput(name="reference", source="neutral_same_speaker")]})


class Toy(nn.Module):
    """A body (frozen when adapting), an adapter, a head; with ``reference``, P4-style conditioning."""

    def __init__(self, n_classes: int, *, width: int = 6, reference: bool = False) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.speaker = (
            nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten()) if reference else None
        )
        self.adapter = nn.Linear(width, width)
        self.classifier = nn.Linear(width, n_classes)

    def forward(self, features: torch.Tensor, *extra: torch.Tensor) -> torch.Tensor:
        hidden = self.body(features)
        if self.speaker is not None:
            hidden = hidden + self.speaker(extra[0])
        return self.classifier(torch.relu(self.adapter(hidden)))


@pytest.fixture(scope="module")
def corpora(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Corpus]:
    folder = tmp_path_factory.mktemp("stages")
    return {
        "iemocap-like": tiny_corpus(folder / "iemocap", per_speaker=12, seed=0),
        "ravdess-like": tiny_corpus(folder / "ravdess", preset="ravdess-like", per_speaker=4, seed=0),
    }


def test_two_input_model_trains_through_the_loop() -> None:
    torch.manual_seed(0)
    module = Toy(3, reference=True)
    features, reference = torch.randn(24, 1, 8, 10), torch.randn(24, 1, 8, 10)
    targets = torch.arange(24) % 3
    before = copy.deepcopy(module.state_dict())
    loss = classification_loss(module, [features, reference], targets)
    epochs_seen: list[int] = []
    run_epochs(module, torch.optim.Adam(module.parameters(), lr=1e-2), loss, torch.arange(24), epochs=2, batch_size=8,
               shuffle=torch_shuffle(0), on_epoch=epochs_seen.append)
    assert epochs_seen == [0, 1]
    after = module.state_dict()
    assert all(not torch.equal(before[name], after[name]) for name in before)  # both branches learn


def test_class_weights_are_inverse_frequency_and_weight_the_loss() -> None:
    targets = torch.tensor([0, 0, 0, 1])
    weights = balanced_class_weights(targets, 3)
    assert torch.allclose(weights, torch.tensor([4 / 9, 4 / 3, 4 / 3]))
    torch.manual_seed(0)
    module, features = nn.Linear(2, 3), torch.randn(4, 2)
    weighted = classification_loss(module, [features], targets, class_weights=weights)(torch.arange(4), 0)
    plain = classification_loss(module, [features], targets)(torch.arange(4), 0)
    expected = nn.functional.cross_entropy(module(features), targets, weight=weights)
    assert torch.allclose(weighted, expected) and not torch.allclose(weighted, plain)


@pytest.mark.parametrize("clip", [None, 1e-3])
def test_gradient_clipping_bounds_the_step(clip: float | None) -> None:
    torch.manual_seed(0)
    module = nn.Linear(4, 2)
    features, targets = 100 * torch.randn(8, 4), torch.tensor([0, 1] * 4)
    before = torch.cat([p.detach().flatten() for p in module.parameters()])
    run_epochs(module, torch.optim.SGD(module.parameters(), lr=1.0), classification_loss(module, [features], targets),
               torch.arange(8), epochs=1, batch_size=8, shuffle=torch_shuffle(0), clip_grad_norm=clip)
    step = (torch.cat([p.detach().flatten() for p in module.parameters()]) - before).norm().item()
    assert step == pytest.approx(1e-3, rel=1e-4) if clip else step > 1.0


def test_stage_optimiser_groups_schedule_and_errors() -> None:
    module = Toy(4)
    stage = Stage(optimiser="sgd", momentum=0.9, nesterov=True, learning_rate=0.1, weight_decay=1e-4, epochs=3,
                  lr_milestones=(1, 2), groups=(ParameterGroup(("body.*",), frozen=True),
                                                ParameterGroup(("adapter.*",), learning_rate=0.5, weight_decay=0.0)))
    optimiser = stage_optimiser(module, stage)
    assert isinstance(optimiser, torch.optim.SGD) and optimiser.defaults["nesterov"]
    assert [(g["lr"], g["weight_decay"], len(g["params"])) for g in optimiser.param_groups] == [(0.1, 1e-4, 2), (0.5, 0.0, 2)]
    assert not any(p.requires_grad for p in module.body.parameters())
    rates: list[float] = []
    run_epochs(module, optimiser, classification_loss(module, [torch.randn(4, 1, 6, 6)], torch.arange(4)), torch.arange(4),
               epochs=3, batch_size=4, shuffle=torch_shuffle(0), rate_factor=stage.rate_factor,
               on_epoch=lambda _epoch: rates.append(optimiser.param_groups[1]["lr"]))
    assert rates == pytest.approx([0.5, 0.05, 0.005])
    with pytest.raises(ConfigError, match="matches no parameter"):
        stage_optimiser(module, Stage(groups=(ParameterGroup(("encoder.*",), frozen=True),)))
    with pytest.raises(ConfigError, match="nesterov"):
        Stage(nesterov=True)
    with pytest.raises(ConfigError, match="last training stage must target emotion"):
        ReferenceModel("x", "p", "d", Toy, SPEC, training=Stage(target="speaker"))


def test_two_stage_recipe_pretrains_on_speakers_then_adapts_with_a_frozen_body(
    corpora: dict[str, Corpus], tmp_path: Path
) -> None:
    built: list[tuple[nn.Module, dict[str, torch.Tensor]]] = []

    def build(n_classes: int) -> nn.Module:
        module = Toy(n_classes)
        built.append((module, copy.deepcopy(module.state_dict())))
        return module

    recipe = (
        Stage(corpus="ravdess-like", target="speaker", epochs=3, batch_size=16, optimiser="sgd", momentum=0.9,
              nesterov=True, learning_rate=0.05, lr_milestones=(2,), clip_grad_norm=15.0),
        Stage(corpus="iemocap-like", target="emotion", epochs=2, batch_size=16, learning_rate=1e-3,
              groups=(ParameterGroup(("body.*",), frozen=True), ParameterGroup(("adapter.*",), learning_rate=1e-2))),
    )
    reference = ReferenceModel("toy", "test", "two stages", build, SPEC, training=recipe)
    trained = train_reference(reference, cache_dir=tmp_path, corpora=corpora)
    (speaker_model, initial), (final, _) = built[0], built[1]
    assert speaker_model.classifier.out_features == 24 and final.classifier.out_features == 4
    pretrained, adapted = speaker_model.state_dict(), final.state_dict()
    for name in ("body.0.weight", "body.0.bias"):
        assert not torch.equal(initial[name], pretrained[name])  # pretraining moved the body
        assert torch.equal(pretrained[name], adapted[name])  # carried over, then frozen
    for name in ("adapter.weight", "adapter.bias"):
        assert not torch.equal(pretrained[name], adapted[name])
    assert all(p.requires_grad for p in final.parameters())
    stages = trained.metrics["stages"]
    assert [(s["target"], s["corpus"]) for s in stages] == [("speaker", "ravdess-like"), ("emotion", "iemocap-like")]
    assert len(stages[0]["speakers"]) == 24 and trained.metrics["training_speakers"] == stages[1]["speakers"]
    assert trained.metrics["held_out_session"] == "Ses05" and not any(s.startswith("Ses05") for s in stages[1]["speakers"])
    assert trained.frontend.emotions == list(corpora["iemocap-like"].emotions)


def test_a_two_input_reference_model_trains_and_hardens(corpora: dict[str, Corpus], tmp_path: Path) -> None:
    reference = ReferenceModel("toy2", "test", "two inputs", lambda n_classes: Toy(n_classes, reference=True), TWO_INPUT_SPEC,
                               training=Stage(epochs=2, batch_size=16))
    trained = train_reference(reference, cache_dir=tmp_path, corpora=corpora)
    assert trained.frontend.extra_inputs == TWO_INPUT_SPEC.extra_inputs and 0.0 <= trained.metrics["held_out_uar"] <= 1.0
    before = copy.deepcopy(trained.module.state_dict())
    model = EagerTorchModel(trained.module, trained.frontend)
    hardened = harden(trained.module, model, corpora["iemocap-like"],
                      HardeningRecipe(method="similarity", epochs=2, warmup_epochs=1, batch_size=16))
    assert not torch.equal(before["speaker.0.weight"], hardened.state_dict()["speaker.0.weight"])
