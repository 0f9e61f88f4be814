"""Output shapes of named submodules: how plugin tests check an architecture against its paper."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn


def output_shapes(module: nn.Module, features: torch.Tensor, names: list[str]) -> dict[str, tuple[int, ...]]:
    """The shape of each named submodule's output on one eval-mode forward pass of ``features``.

    Example:
        >>> output_shapes(nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten()), torch.zeros(2, 1, 5, 5), ["0"])
        {'0': (2, 4, 3, 3)}
    """
    shapes: dict[str, tuple[int, ...]] = {}
    modules = dict(module.named_modules())

    def hook(name: str) -> Callable[..., None]:
        return lambda _module, _inputs, output: shapes.__setitem__(name, tuple(output.shape))

    handles = [modules[name].register_forward_hook(hook(name)) for name in names]
    try:
        with torch.no_grad():
            module.eval()(features)
    finally:
        for handle in handles:
            handle.remove()
    return shapes
