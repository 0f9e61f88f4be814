"""The probe interface: one small class per attack, the math in one method, the chores here.

Like torchattacks' ``Attack``: ``__init__`` stores hyper-parameters; ``__call__`` puts the model
in eval mode, runs ``perturb`` and restores the model's mode in ``finally``.

A probe computes on the device its inputs are on (the model must be there too): ``__call__`` puts the
labels beside them, and random draws (PGD's start, SPSA's directions) come from seeded CPU generators
and are moved there as drawn, so a seed gives the same draws on every device.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Callable

import torch
from torch import nn

from ser_audit.errors import ConfigError

LossFunction = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class Probe(ABC):
    """An adversarial probe on a differentiable model ``f(x) -> logits``.

    Args:
        targeted: Move predictions towards ``labels`` (the target classes) instead of away from them.
        clip: Optional (low, high) bounds for the adversarial input, like ART's ``clip_values``.
    """

    name = "probe"
    gradient_kind = "white-box"

    def __init__(self, *, targeted: bool = False, clip: tuple[float, float] | None = None) -> None:
        self.targeted = targeted
        self.clip = clip

    def __call__(self, model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        # Each submodule's own mode is restored: a fresh wrapper reports training=True, and
        # restoring that recursively would leave the target's batch norms in training mode.
        modes = [(module, module.training) for module in model.modules()]
        model.eval()
        try:
            return self.perturb(model, inputs.detach(), labels.to(inputs.device))
        finally:
            for module, mode in modes:
                module.training = mode

    @abstractmethod
    def perturb(self, model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Adversarial inputs, same shape as ``inputs``."""

    def loss_gradient(self, model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """d loss / d inputs, signed so that adding it moves towards the probe's goal."""
        inputs = inputs.clone().requires_grad_(True)
        loss = nn.functional.cross_entropy(model(inputs), labels, reduction="sum")
        (gradient,) = torch.autograd.grad(loss, inputs, allow_unused=True)
        if gradient is None:  # an input the model ignores (a two-input model's unused reference): left as it is
            gradient = torch.zeros_like(inputs)
        return -gradient if self.targeted else gradient

    def _bound(self, adversarial: torch.Tensor, inputs: torch.Tensor, eta: float | None) -> torch.Tensor:
        if eta is not None:
            adversarial = torch.max(torch.min(adversarial, inputs + eta), inputs - eta)
        if self.clip is not None:
            adversarial = adversarial.clamp(*self.clip)
        return adversarial


def check_eps(name: str, values: list[float]) -> None:
    if not values or any(not (0.0 <= v < float("inf")) for v in values):
        raise ConfigError(f"{name} must be non-negative finite numbers (got {values})")


PROBE_GROUP = "ser_audit.probes"


def probe_class(name: str) -> Any:
    """The probe class registered as ``name`` under ``ser_audit.probes`` (the bundled ``fgsm`` and ``pgd``,
    and any plugin's, which takes the radius as ``eps`` and ``targeted``); its constructor is the
    plugin's own, so it is typed Any."""
    from ser_audit.plugins import registered

    return registered(PROBE_GROUP, name, kind="probe", flag="--probe")
