"""Eager torch modules, tapped with forward hooks by module name."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from ser_audit.frontend.spec import FrontEndSpec
from ser_audit.models.interface import ForwardResult, TargetModel

# Modules that are the identity at inference: exporters drop them, so they are not layers.
_INFERENCE_IDENTITY = (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)


class EagerTorchModel(TargetModel):
    """A ``torch.nn.Module`` in eval mode; layers are its leaf modules in call order."""

    format = "torch"

    def __init__(self, module: nn.Module, frontend: FrontEndSpec, *, path: Path | None = None) -> None:
        self.module = module.eval()
        self.frontend = frontend
        self.path = path
        self._layers = None

    def _layer_kinds(self) -> list[tuple[str, str]]:
        leaves = {
            name: module
            for name, module in self.module.named_modules()
            if name and not any(True for _ in module.children()) and not isinstance(module, _INFERENCE_IDENTITY)
        }
        order: list[str] = []
        handles = [
            module.register_forward_hook(lambda _m, _i, _o, name=name: order.append(name))
            for name, module in leaves.items()
        ]
        try:
            with torch.no_grad():
                self.module(*self._tensors(self.example_inputs()))
        finally:
            for handle in handles:
                handle.remove()
        seen: dict[str, None] = dict.fromkeys(order)  # a module called twice keeps its first position
        return [(name, type(leaves[name]).__name__) for name in seen]

    def _tensors(self, inputs: Mapping[str, np.ndarray]) -> list[torch.Tensor]:
        return [torch.from_numpy(np.ascontiguousarray(inputs[name])) for name in self.input_names]

    def forward(self, inputs: Mapping[str, np.ndarray], taps: Sequence[str] = ()) -> ForwardResult:
        captured: dict[str, torch.Tensor] = {}
        modules = dict(self.module.named_modules())
        handles = [
            modules[name].register_forward_hook(lambda _m, _i, output, name=name: captured.setdefault(name, output))
            for name in taps
        ]
        # An in-place activation (nn.ReLU(inplace=True)) would overwrite the tapped output of
        # the layer before it; switched off while tapping, restored after.
        in_place = [m for m in modules.values() if getattr(m, "inplace", None) is True] if taps else []
        for module in in_place:
            module.inplace = False
        try:
            with torch.no_grad():
                logits = self.module(*self._tensors(inputs))
        finally:
            for handle in handles:
                handle.remove()
            for module in in_place:
                module.inplace = True
        return ForwardResult(
            logits=logits.float().numpy(),
            layers={name: captured[name].float().numpy() for name in taps},
        )
