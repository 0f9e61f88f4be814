"""ser-audit's probes against the peers' implementations (test-only dependencies)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ser_audit.robustness.fgsm import FGSM, P2_EPS_GRID
from ser_audit.robustness.pgd import PGD
from ser_audit_reference.cnn4 import CNN4


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    model = CNN4(4, width=0.0625).eval()
    inputs = torch.rand(6, 1, 64, 63)
    labels = torch.tensor([0, 1, 2, 3, 0, 1])
    return model, inputs, labels


@pytest.mark.parametrize("eps", [0.02, 0.1])
def test_fgsm_equals_art_fast_gradient_method(setup, eps: float) -> None:
    art_estimators = pytest.importorskip("art.estimators.classification")
    art_evasion = pytest.importorskip("art.attacks.evasion")
    model, inputs, labels = setup
    classifier = art_estimators.PyTorchClassifier(
        model=model, loss=torch.nn.CrossEntropyLoss(), input_shape=tuple(inputs.shape[1:]), nb_classes=4,
    )
    attack = art_evasion.FastGradientMethod(estimator=classifier, eps=eps, eps_step=eps, norm=np.inf)
    expected = attack.generate(inputs.numpy(), y=np.eye(4)[labels.numpy()])
    ours = FGSM(eps)(model, inputs, labels).numpy()
    assert np.abs(ours - expected).max() < 1e-6


def test_fgsm_equals_torchattacks(setup) -> None:
    torchattacks = pytest.importorskip("torchattacks")
    model, inputs, labels = setup
    expected = torchattacks.FGSM(model, eps=0.05)(inputs, labels)
    ours = FGSM(0.05, clip=(0.0, 1.0))(model, inputs, labels)
    assert torch.abs(ours - expected).max() < 1e-6


def test_sweep_reuses_one_gradient_and_respects_eta(setup) -> None:
    model, inputs, labels = setup
    sweep = FGSM(eta=0.05).sweep(model, inputs, labels, list(P2_EPS_GRID))
    assert torch.equal(sweep[0], inputs)
    for eps, adversarial in zip(P2_EPS_GRID, sweep):
        assert torch.abs(adversarial - inputs).max() <= min(eps, 0.05) + 1e-6
    single = FGSM(0.04)(model, inputs, labels)
    assert torch.allclose(single, FGSM().sweep(model, inputs, labels, [0.04])[0])


def test_pgd_stays_in_the_ball_and_is_stronger_than_fgsm(setup) -> None:
    model, inputs, labels = setup
    loss = torch.nn.functional.cross_entropy
    pgd = PGD(0.1, steps=10)(model, inputs, labels)
    fgsm = FGSM(0.1)(model, inputs, labels)
    assert torch.abs(pgd - inputs).max() <= 0.1 + 1e-6
    with torch.no_grad():
        assert loss(model(pgd), labels) >= loss(model(fgsm), labels) - 1e-4


def test_targeted_fgsm_moves_towards_the_target(setup) -> None:
    model, inputs, labels = setup
    target = torch.full_like(labels, 2)
    adversarial = FGSM(0.2, targeted=True)(model, inputs, target)
    with torch.no_grad():
        before = torch.nn.functional.cross_entropy(model(inputs), target)
        after = torch.nn.functional.cross_entropy(model(adversarial), target)
    assert after < before


def test_model_mode_is_restored(setup) -> None:
    model, inputs, labels = setup
    model.train()
    FGSM(0.01)(model, inputs, labels)
    assert model.training
    model.eval()


def test_spsa_estimate_points_like_the_true_gradient() -> None:
    from ser_audit.robustness.spsa import ForwardOnly, SpsaFGSM

    torch.manual_seed(0)
    model = torch.nn.Linear(8, 3)
    inputs, labels = torch.randn(16, 8), torch.randint(0, 3, (16,))
    true = FGSM().loss_gradient(model, inputs, labels)

    def logits(primary, scale):  # a second input, fed unchanged, as ForwardOnly passes every input
        with torch.no_grad():
            return (model(torch.from_numpy(primary)) * torch.from_numpy(scale)).numpy()

    wrapped = ForwardOnly(logits)
    bound = lambda x: wrapped(x, torch.ones(len(x), 1))  # noqa: E731
    estimate = SpsaFGSM(samples=256, delta=1e-3).loss_gradient(bound, inputs, labels)
    agreement = (estimate.sign() == true.sign()).float().mean()
    assert agreement > 0.8


def test_a_probe_leaves_every_submodule_in_the_mode_it_found() -> None:
    """A fresh wrapper reports training=True; restoring that recursively used to put the target's
    batch norms into training mode for every later batch."""
    from torch import nn

    target = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Linear(4, 2)).eval()

    class Wrapper(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.target = target

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.target(x)

    wrapper = Wrapper()
    assert wrapper.training
    PGD(0.1, steps=2)(wrapper, torch.randn(3, 4), torch.tensor([0, 1, 0]))
    assert wrapper.training and not any(module.training for module in target.modules())
