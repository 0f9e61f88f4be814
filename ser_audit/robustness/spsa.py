"""A gradient-free FGSM for models without a differentiable path (SPSA gradient estimate).

SPSA (Spall, 1992): with random sign vectors d, grad ~ mean_d [L(x + c d) - L(x - c d)] / (2 c) * d.
Only forward passes are needed, so any ONNX graph onnxruntime runs can be probed. Rows made
with it say ``black-box``: the estimate is noisy and the attack weaker than white-box FGSM.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ser_audit.robustness.fgsm import FGSM


class ForwardOnly(nn.Module):
    """Wraps a numpy ``logits(primary, *extra)`` function (e.g. an onnxruntime session) as a module."""

    def __init__(self, logits) -> None:  # type: ignore[no-untyped-def]
        super().__init__()
        self.logits = logits

    def forward(self, inputs: torch.Tensor, *extra: torch.Tensor) -> torch.Tensor:
        arrays = [tensor.detach().cpu().numpy().astype(np.float32) for tensor in (inputs, *extra)]
        return torch.from_numpy(self.logits(*arrays)).to(inputs.device)


class SpsaFGSM(FGSM):
    """FGSM whose gradient is an SPSA estimate from ``samples`` pairs of forward passes."""

    name = "fgsm"
    gradient_kind = "black-box"

    def __init__(self, eps: float = 0.02, *, samples: int = 32, delta: float = 0.01, seed: int = 0, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(eps, **kwargs)
        self.samples = samples
        self.delta = delta
        self.seed = seed

    def loss_gradient(self, model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.seed)
        estimate = torch.zeros_like(inputs)
        with torch.no_grad():
            for _ in range(self.samples):
                direction = (torch.randint(0, 2, inputs.shape, generator=generator).to(inputs.dtype) * 2 - 1).to(
                    inputs.device)
                plus = nn.functional.cross_entropy(model(inputs + self.delta * direction), labels, reduction="none")
                minus = nn.functional.cross_entropy(model(inputs - self.delta * direction), labels, reduction="none")
                change = (plus - minus).view(-1, *([1] * (inputs.dim() - 1)))
                estimate += change / (2 * self.delta) * direction
        return -estimate if self.targeted else estimate
