"""Graphs exported with a batch of one (``torch.onnx.export`` without ``dynamic_axes``), run one utterance at a time.

Such a graph declares batch 1 on its inputs and usually bakes the 1 into its reshapes, so a batch of two
fails inside it. ser-audit feeds it utterance by utterance instead and stacks the results: slower, but the
figures are the batched run's. Its torch conversions (gradients, the same-architecture sub-network) are
wrapped the same way.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

NOTE = "the graph fixes its batch at 1 (exported without a dynamic batch axis): run one utterance at a time"


def refuse_training(model: object, what: str) -> None:
    """Training through a graph run one utterance at a time would normalise, capture and export per utterance:
    ``harden`` and ``protect`` need a batched graph.

    A TorchScript archive takes neither the forward hooks ``protect`` and similarity hardening read layers
    through nor retraining of its loaded parameters.

    Raises:
        ConfigError: naming the re-export to do.
    """
    if getattr(model, "format", None) == "torchscript":
        from ser_audit.errors import ConfigError

        raise ConfigError(f"model {getattr(model, 'path', None)} is a TorchScript archive, which {what} cannot train "
                          "or hook; give the same model as ONNX (torch.onnx.export) or as python:module:factory with "
                          "--weights")
    if getattr(model, "batch_of_one", False) or getattr(getattr(model, "graph", None), "batch_of_one", False):
        from ser_audit.errors import ConfigError

        name = getattr(getattr(model, "frontend", None), "input_name", "features")
        raise ConfigError(f"model {getattr(model, 'path', None)} fixes its batch at 1: {what} trains and writes a "
                          "batched model; re-export it with a dynamic batch axis, e.g. torch.onnx.export(..., "
                          f"dynamic_axes={{{name!r}: {{0: 'batch'}}, 'logits': {{0: 'batch'}}}})")


def stacking_axis(single: np.ndarray | torch.Tensor) -> int:
    """Where one utterance's output keeps its batch: its first axis of size 1 (a time-major activation keeps it
    second); an output without one (a frame-batched layer: one row per frame) is stacked on its leading axis."""
    return next((axis for axis, size in enumerate(single.shape) if size == 1), 0)


def run_each(run: Callable[[dict[str, np.ndarray]], Sequence[np.ndarray]], inputs: Mapping[str, np.ndarray],
             axes: Mapping[str, int]) -> list[np.ndarray]:
    """``run`` on each utterance of ``inputs`` (cut along ``axes``), every output stacked back."""
    batch = next(iter(inputs.values())).shape[next(iter(axes.values()))]
    if batch == 1:
        return list(run(dict(inputs)))
    singles = [run({name: np.take(value, [row], axis=axes[name]) for name, value in inputs.items()})
               for row in range(batch)]
    return [np.stack(parts) if np.ndim(parts[0]) == 0 else np.concatenate(parts, axis=stacking_axis(parts[0]))
            for parts in zip(*singles)]


class OneAtATime(nn.Module):
    """``module`` applied to each utterance of its inputs (cut along ``axes``, one per input), outputs stacked.

    A batch norm inside would normalise each utterance by itself while training, which is not the layer the
    target trained: :func:`trainable` says whether a wrapped module may be trained.
    """

    def __init__(self, module: nn.Module, axes: Sequence[int]) -> None:
        super().__init__()
        self.module = module
        self.axes = list(axes)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        batch = inputs[0].shape[self.axes[0]]
        if batch == 1:
            return self.module(*inputs)
        singles = [self.module(*(x.narrow(axis, row, 1) for x, axis in zip(inputs, self.axes))) for row in range(batch)]
        return torch.stack(singles) if singles[0].ndim == 0 else torch.cat(singles, dim=stacking_axis(singles[0]))


def trainable(module: nn.Module) -> bool:
    """Whether a module run one utterance at a time trains as it would on batches: not with a batch norm."""
    return not any(isinstance(layer, nn.modules.batchnorm._BatchNorm) for layer in module.modules())
