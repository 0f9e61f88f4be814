"""Reading and replacing one layer of a model's torch path by its module name."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

from ser_audit.errors import ConfigError
from ser_audit.models.differentiable import module_names_hint


def submodule(module: nn.Module, layer: str) -> nn.Module:
    """The module named ``layer`` (as ``ser-audit layers`` lists it), or ConfigError in one line."""
    modules = dict(module.named_modules())
    for name in (layer, f"module.{layer}"):  # a path wrapped for auxiliary inputs keeps the names one level down
        if name and name in modules:
            return modules[name]
    raise ConfigError(f"--layer {layer!r} is not a module of the model's torch path, which protect trains; "
                      + module_names_hint(module))


def replace(module: nn.Module, layer: str, replacement: nn.Module) -> None:
    """Put ``replacement`` where ``layer`` was (the name then reads the replacement's output)."""
    names = dict(module.named_modules())
    name = layer if layer in names else f"module.{layer}"
    parent_name, _, child = name.rpartition(".")
    setattr(names[parent_name] if parent_name else module, child, replacement)


@contextmanager
def captured(module: nn.Module, layer: str) -> Iterator[list[torch.Tensor]]:
    """Every output of ``layer`` during the block (a tuple's first item: an RNN's sequence)."""
    outputs: list[torch.Tensor] = []

    def keep(_module: nn.Module, _inputs: object, output: object) -> None:
        outputs.append(output[0] if isinstance(output, (tuple, list)) else output)  # type: ignore[arg-type]

    handle = submodule(module, layer).register_forward_hook(keep)
    try:
        yield outputs
    finally:
        handle.remove()


def frames(activation: torch.Tensor, time_axis: int | None) -> torch.Tensor:
    """``[batch, ...]`` to ``[batch, time, features]`` (one frame when the layer has no time axis)."""
    if time_axis is None or time_axis >= activation.ndim:
        return activation.reshape(activation.shape[0], 1, -1)
    moved = activation.movedim(time_axis, 1)
    return moved.reshape(moved.shape[0], moved.shape[1], -1)


def pooled(activation: torch.Tensor, time_axis: int | None) -> torch.Tensor:
    """Mean and std over time of every feature, as the linear probe reads a layer."""
    per_frame = frames(activation, time_axis)
    if per_frame.shape[1] == 1:
        return per_frame[:, 0]
    return torch.cat([per_frame.mean(1), per_frame.std(1, unbiased=False)], dim=1)
