"""Defenses on planted layers: what linear erasure removes, and what it leaves to nonlinear attackers."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ser_audit.defenses import defense, defenses
from ser_audit.defenses.adversarial import AdversarialDefense, reversed_gradient
from ser_audit.defenses.interface import ProtectionData
from ser_audit.defenses.projection import leace
from ser_audit.defenses.tap import captured, pooled
from ser_audit.leakage.attackers.linear import LinearProbe


class TwiceLeaking(nn.Module):
    """``both`` carries the attribute twice: in the mean of channel 0 (linear) and in the spread of channel 1
    over time, with the same mean for both classes (only nonlinear); the head reads channel 2."""

    def __init__(self) -> None:
        super().__init__()
        self.both = nn.Identity()
        self.head = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.both(x).mean(-1))


def _planted(n: int = 240, frames: int = 20, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    attribute = np.arange(n) % 2
    x = rng.normal(size=(n, 3, frames))
    x[:, 0] += np.where(attribute == 1, 1.0, -1.0)[:, None]
    x[:, 1] *= np.where(attribute == 1, 2.0, 0.5)[:, None]
    return torch.from_numpy(x).float(), torch.from_numpy(attribute)


def _data(x: torch.Tensor, attribute: torch.Tensor) -> ProtectionData:
    return ProtectionData(inputs=lambda rows: [x[rows]], emotion=attribute.clone(), attribute=attribute,
                          attribute_classes=["female", "male"], time_axis=2, description="planted")


def _probe_accuracy(module: nn.Module, x: torch.Tensor, attribute: torch.Tensor, test: torch.Tensor,
                    test_attribute: torch.Tensor, *, channels: slice) -> float:
    def features(inputs: torch.Tensor) -> np.ndarray:
        with torch.no_grad(), captured(module, "both") as outputs:
            module(inputs)
        return pooled(outputs[-1][:, channels], 2).numpy()

    probe = LinearProbe().fit(features(x), attribute.numpy())
    return float(np.mean(probe.predict(features(test)) == test_attribute.numpy()))


def test_bundled_defenses_are_registered() -> None:
    assert {"projection", "adversarial"} <= set(defenses())


def test_leace_leaves_no_linear_cross_covariance() -> None:
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, 600)
    x = rng.normal(size=(600, 5)) @ rng.normal(size=(5, 5)) + np.eye(3, 5)[labels] * 2
    erasure, mean = leace([(x, labels)], 3)
    erased = x - (x - mean) @ erasure.T
    cross = (erased - erased.mean(0)).T @ (np.eye(3)[labels] - np.eye(3)[labels].mean(0)) / len(x)
    assert np.abs(cross).max() < 1e-8
    assert np.linalg.matrix_rank(erasure) == 2  # k - 1 directions for k classes


def test_projection_removes_the_linear_copy_and_leaves_the_nonlinear_one() -> None:
    x, attribute = _planted()
    test, test_attribute = _planted(seed=1)
    model = TwiceLeaking().eval()
    protected = defense("projection").protect(model, "both", _data(x, attribute), 1.0).module
    # The mean over time of the linear channel carries it before, and nothing after.
    assert _probe_accuracy(model, x, attribute, test, test_attribute, channels=slice(0, 1)) > 0.9
    assert _probe_accuracy(protected, x, attribute, test, test_attribute, channels=slice(0, 1)) < 0.65
    # The spread of the other channel is untouched: linear removal leaves it to a nonlinear reading.
    assert _probe_accuracy(protected, x, attribute, test, test_attribute, channels=slice(1, 2)) > 0.9
    assert [name for name, _ in protected.named_modules()][:2] == ["", "both"]  # the layer keeps its name


def test_gradient_reversal_flips_and_scales_the_gradient() -> None:
    features = torch.ones(3, requires_grad=True)
    (reversed_gradient(features, 2.5) * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    assert torch.allclose(features.grad, torch.tensor([-2.5, -5.0, -7.5]))


class Encoder(nn.Module):
    """A trainable layer that can keep or drop the attribute, and an emotion head after it."""

    def __init__(self) -> None:
        super().__init__()
        self.both = nn.Conv1d(3, 4, 1)
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.both(x).mean(-1))


def test_adversarial_removal_lowers_the_linear_leak_and_keeps_emotion() -> None:
    torch.manual_seed(0)
    x, attribute = _planted(n=400)
    emotion = torch.from_numpy((np.arange(400) // 2) % 2)
    x[:, 1] = torch.randn(400, 20)  # the linear copy only: a trained layer can drop it
    x[:, 2] += (emotion * 2 - 1)[:, None].float()  # emotion on its own channel
    test, test_attribute = _planted(n=400, seed=1)
    test_emotion = torch.from_numpy((np.arange(400) // 2) % 2)
    test[:, 1] = torch.randn(400, 20)
    test[:, 2] += (test_emotion * 2 - 1)[:, None].float()
    model = Encoder()
    optimiser = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(100):  # a working emotion model first: protection keeps what it predicts
        optimiser.zero_grad()
        nn.functional.cross_entropy(model(x), emotion).backward()
        optimiser.step()
    data = ProtectionData(inputs=lambda rows: [x[rows]], emotion=emotion, attribute=attribute,
                          attribute_classes=["female", "male"], time_axis=2, description="planted")
    trainer = AdversarialDefense(epochs=60)
    weak = trainer.protect(model, "both", data, 0.0)  # no reversal: emotion only
    strong = trainer.protect(model, "both", data, 3.0)
    def attribute_share(module: nn.Module) -> float:
        """How much the layer reads the attribute's channel, against a noise channel emotion has no use for either."""
        weight = module.both.weight.detach().abs()[:, :, 0]
        return float(weight[:, 0].sum() / weight[:, 1].sum())

    assert attribute_share(strong.module) < 0.7 * attribute_share(weak.module), (
        attribute_share(weak.module), attribute_share(strong.module))
    with torch.no_grad():
        kept = (strong.module(test).argmax(1) == test_emotion).float().mean()
    assert kept > 0.8
    assert strong.own_adversary is not None
