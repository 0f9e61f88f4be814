"""PGD: projected gradient descent in the L-infinity ball (Madry et al., 2018), the stronger probe.

    x_0 = x + U(-eps, eps)  (random start, optional)
    x_{k+1} = Proj_{|x' - x| <= eps}( x_k + step * sign(grad_x L(w, x_k, y)) )

Example:
    >>> import torch
    >>> model = torch.nn.Linear(3, 2)
    >>> x, y = torch.zeros(4, 3), torch.tensor([0, 1, 0, 1])
    >>> PGD(eps=0.1, steps=3)(model, x, y).abs().max().item() <= 0.1 + 1e-7
    True
"""

from __future__ import annotations

import torch
from torch import nn

from ser_audit.errors import ConfigError
from ser_audit.robustness.interface import Probe, check_eps


class PGD(Probe):
    """L-infinity projected gradient descent.

    Args:
        eps: Radius of the L-infinity ball.
        step_size: Step per iteration; default ``2.5 * eps / steps`` (Madry et al.'s choice).
        steps: Iterations (at least 1).
        random_start: Start from a uniform point in the ball.
        seed: Seed of the random start.
    """

    name = "pgd"

    def __init__(self, eps: float = 0.02, *, step_size: float | None = None, steps: int = 10, random_start: bool = True,
                 seed: int = 0, targeted: bool = False, clip: tuple[float, float] | None = None) -> None:
        super().__init__(targeted=targeted, clip=clip)
        check_eps("--pgd-eps", [eps])
        if steps < 1:
            raise ConfigError(f"--pgd-steps must be at least 1 (got {steps})")
        if step_size is not None and step_size <= 0:
            raise ConfigError(f"--pgd-step-size must be positive (got {step_size})")
        self.eps = eps
        self.step_size = step_size
        self.steps = steps
        self.random_start = random_start
        self.seed = seed

    def perturb(self, model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        step = self.step_size if self.step_size is not None else 2.5 * self.eps / self.steps
        adversarial = inputs.clone()
        if self.random_start:
            generator = torch.Generator().manual_seed(self.seed)
            noise = (torch.rand(inputs.shape, generator=generator, dtype=inputs.dtype) * 2 - 1).to(inputs.device)
            adversarial = self._bound(inputs + self.eps * noise, inputs, self.eps)
        for _ in range(self.steps):
            adversarial = adversarial + step * self.loss_gradient(model, adversarial, labels).sign()
            adversarial = self._bound(adversarial, inputs, self.eps).detach()
        return adversarial
