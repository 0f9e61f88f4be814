"""FGSM: the fast gradient sign method as P2 uses it (Ren et al., ICASSP 2020, eqs. 1-2).

    x' = clip(x + eps * sign(grad_x L(w, x, y)), x - eta, x + eta)

Non-targeted, white-box, L-infinity. The gradient is taken once at ``x``, so a whole eps grid
costs one backward pass: ``sweep`` returns every eps from that single gradient.

Example:
    >>> import torch
    >>> model = torch.nn.Linear(3, 2)
    >>> x, y = torch.zeros(4, 3), torch.tensor([0, 1, 0, 1])
    >>> FGSM(eps=0.1)(model, x, y).abs().max().item() <= 0.1 + 1e-7
    True
"""

from __future__ import annotations

import torch
from torch import nn

from ser_audit.robustness.interface import Probe, check_eps

P2_EPS_GRID = (0.0, 0.02, 0.04, 0.06, 0.08, 0.10)


class FGSM(Probe):
    """Fast gradient sign method.

    Args:
        eps: Step size in input units.
        eta: Optional L-infinity bound around ``x`` applied after the step (P2's clip).
        targeted: Step towards ``labels`` instead of away.
        clip: Optional (low, high) value range of the input.
    """

    name = "fgsm"

    def __init__(self, eps: float = 0.02, *, eta: float | None = None, targeted: bool = False,
                 clip: tuple[float, float] | None = None) -> None:
        super().__init__(targeted=targeted, clip=clip)
        check_eps("--eps", [eps])
        self.eps = eps
        self.eta = eta

    def perturb(self, model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.sweep(model, inputs, labels, [self.eps])[0]

    def sweep(self, model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, grid: list[float]) -> list[torch.Tensor]:
        """Adversarial inputs for every eps in ``grid`` from one gradient."""
        check_eps("--eps", list(grid))
        direction = self.loss_gradient(model, inputs, labels.to(inputs.device)).sign()
        return [self._bound(inputs + eps * direction, inputs, self.eta).detach() for eps in grid]
