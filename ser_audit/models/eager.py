"""Eager torch modules, tapped with forward hooks by module name."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from ser_audit.frontend.spec import FrontEndSpec
from ser_audit.models.interface import ForwardResult, LayerEntry, Placement, TargetModel
from ser_audit.models.subnetwork import Downstream

# Modules that are the identity at inference: exporters drop them, so they are not layers.
_INFERENCE_IDENTITY = (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)

TUPLE_NOTE = "first element of the module's tuple output (the sequence output; states dropped)"
PACKED_NOTE = "the packed sequence output, padded"


def first_tensor(output: Any) -> tuple[torch.Tensor | None, str | None]:
    """The tensor a layer stands for, and a note when it had to be picked out of a tuple, dict or
    packed sequence (an RNN's ``(output, (h, c))``, an encoder's ``{"hidden": ...}``)."""
    if isinstance(output, torch.Tensor):
        return output, None
    if isinstance(output, nn.utils.rnn.PackedSequence):
        padded, _ = nn.utils.rnn.pad_packed_sequence(output, batch_first=True)
        return padded, PACKED_NOTE
    if isinstance(output, (tuple, list)) and output:
        tensor, note = first_tensor(output[0])
        return tensor, note or TUPLE_NOTE
    if isinstance(output, dict) and output:
        key = next(iter(output))
        tensor, note = first_tensor(output[key])
        return tensor, note or f"the {key!r} entry of the module's dict output"
    return None, None


def logits_of(output: Any) -> torch.Tensor:
    """The logits in whatever a module returns: a tensor, a transformers ModelOutput or dict (``logits``),
    a dataclass with ``logits``, or a tuple whose first tensor they are."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, dict) and isinstance(output.get("logits"), torch.Tensor):
        return output["logits"]
    if isinstance(getattr(output, "logits", None), torch.Tensor):
        return output.logits
    tensor, _ = first_tensor(output)
    if tensor is None:
        raise TypeError(f"the module returned a {type(output).__name__} with no logits tensor in it")
    return tensor


class LogitsOnly(nn.Module):
    """A module whose output is not a tensor, made to return its logits (for gradients and exports)."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return logits_of(self.module(*inputs))


class EagerTorchModel(TargetModel):
    """A ``torch.nn.Module`` in eval mode. Its layers are the leaf modules in call order, and the
    container modules whose output is their own operation (a residual block's sum), not a child's."""

    format = "torch"

    def __init__(self, module: nn.Module, frontend: FrontEndSpec, *, path: Path | None = None) -> None:
        self.module = module.eval()
        self.frontend = frontend
        self.path = path
        self._layers = None
        self._returns_tensor: bool | None = None
        self.device = str(next((tensor.device for tensor in (*module.parameters(), *module.buffers())), "cpu"))

    def place(self, device: str) -> Placement:
        """The module moved to ``device``; each batch goes there once and its taps come back once."""
        self.module.to(device)
        self.device = device
        return Placement(device)

    def _layer_entries(self) -> list[LayerEntry]:
        modules = {name: module for name, module in self.module.named_modules() if name}
        entries: dict[str, LayerEntry] = {}
        produced: list[torch.Tensor] = []  # outputs seen so far (kept alive, so ids stay unique)
        owners: list[tuple[torch.Tensor, str]] = []  # each entry's output
        readers: dict[str, set[str]] = {}  # entry -> the leaf modules that read its output
        called: set[str] = set()
        aliases: dict[str, LayerEntry] = {}
        order: list[str] = []  # entries and aliases in the order they completed

        def record(name: str, module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
            called.add(name)
            tensor, note = first_tensor(output)
            # Leaf: no submodule ran inside it (MultiheadAttention's out_proj is a child it never calls).
            leaf = not any(other.startswith(name + ".") for other in called)
            if leaf:
                for source, owner in owners:
                    if any(value is source for value in inputs):
                        readers.setdefault(owner, set()).add(name)
            if tensor is None or name in entries:
                return
            if leaf and isinstance(module, _INFERENCE_IDENTITY):
                return
            reused = any(tensor is earlier for earlier in produced)
            produced.append(tensor)
            if leaf or not reused:
                entries[name] = LayerEntry(name, type(module).__name__, block=not leaf, note=note)
                owners.append((tensor, name))
                order.append(name)
            elif name not in aliases:  # a container that returns a child's output: a layer only as a named block
                aliases[name] = LayerEntry(name, type(module).__name__, block=True, note=note)
                order.append(name)

        handles = [
            module.register_forward_hook(lambda m, inputs, output, name=name: record(name, m, inputs, output))
            for name, module in modules.items()
        ]
        try:
            with torch.no_grad():
                self._call(self._tensors(self.example_inputs()))
        finally:
            for handle in handles:
                handle.remove()
        # A transformer's blocks (feature encoder, post-LN encoder blocks) end in a child's output; they are
        # layers too, under the names users know them by (``ser_audit.models.blocks``).
        from ser_audit.models.blocks import transformer_blocks

        blocks = set(transformer_blocks(list(entries))) | set(transformer_blocks(order))
        listed = [entries[name] if name in entries else aliases[name] for name in order
                  if name in entries or name in blocks]
        return [replace(entry, readers=len(readers.get(entry.name, ()))) for entry in listed]

    def _call(self, tensors: Sequence[torch.Tensor]) -> torch.Tensor:
        """The module on ``tensors``, its logits unwrapped from a ModelOutput, dict, dataclass or tuple."""
        return logits_of(self.module(*tensors))

    def _tensors(self, inputs: Mapping[str, np.ndarray]) -> list[torch.Tensor]:
        return [torch.from_numpy(np.ascontiguousarray(inputs[name])).to(self.device) for name in self.input_names]

    def _run(self, inputs: Mapping[str, np.ndarray], taps: Sequence[str]) -> ForwardResult:
        captured: dict[str, torch.Tensor] = {}
        modules = dict(self.module.named_modules())

        def capture(name: str, output: Any) -> None:
            tensor, _ = first_tensor(output)
            if tensor is not None:
                captured.setdefault(name, tensor)

        handles = [
            modules[name].register_forward_hook(lambda _m, _i, output, name=name: capture(name, output)) for name in taps
        ]
        # An in-place activation (nn.ReLU(inplace=True)) would overwrite the tapped output of
        # the layer before it; switched off while tapping, restored after.
        in_place = [m for m in modules.values() if getattr(m, "inplace", None) is True] if taps else []
        for module in in_place:
            module.inplace = False
        try:
            with torch.no_grad():
                logits = self._call(self._tensors(inputs))
        finally:
            for handle in handles:
                handle.remove()
            for module in in_place:
                module.inplace = True
        return ForwardResult(
            logits=logits.float().cpu().numpy(),
            layers={name: captured[name].float().cpu().numpy() for name in taps},
        )

    def _downstream(self, layer: str) -> Downstream:
        from ser_audit.models.subnetwork import split_eager

        return split_eager(self.module, layer)

    def differentiable(self) -> nn.Module:
        if self._returns_tensor is None:
            with torch.no_grad():
                self._returns_tensor = isinstance(self.module(*self._tensors(self.example_inputs())), torch.Tensor)
        return self.module if self._returns_tensor else LogitsOnly(self.module)
