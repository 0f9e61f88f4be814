"""The differentiable torch path of any loaded model, for gradients (probes) and fine-tuning (hardening)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ser_audit.errors import ModelError
from ser_audit.models.interface import TargetModel
from ser_audit.models.onnx_converters import convert_onnx_graph, logits_output

if TYPE_CHECKING:

    from ser_audit.models.onnx_model import OnnxModel


def torch_module(model: TargetModel) -> nn.Module:
    """A torch module computing the model's logits from the inputs callers feed (``model.fed_names``: the
    primary input, then any neutral reference); auxiliary inputs are made inside, as ``forward`` makes them."""
    module = model.differentiable()
    return WithAuxiliaryInputs(module, model) if model.frontend.auxiliary_inputs else module


class WithAuxiliaryInputs(nn.Module):
    """A model's torch path that takes the fed inputs only, making the auxiliary ones (zeros, constants,
    lengths, masks) from the primary batch: constants, so gradients flow through the fed inputs alone.

    ``module`` is the path over every input in model order (what ``export_model`` writes back out).
    """

    def __init__(self, module: nn.Module, model: TargetModel) -> None:
        super().__init__()
        self.module = module
        self.frontend = model.frontend
        self.declared = model.declared_inputs()
        self.origin = f"model {model.path or 'in memory'}"
        self.input_names, self.fed_names = model.input_names, model.fed_names

    def auxiliary(self, primary: torch.Tensor) -> dict[str, torch.Tensor]:
        """The auxiliary tensors for a primary batch, on its device."""
        from ser_audit.models.inputs import auxiliary_inputs, primary_extent

        batch, length = primary_extent(self.frontend, tuple(primary.shape))
        made = auxiliary_inputs(self.frontend, self.declared, batch=batch, length=length, origin=self.origin)
        return {name: torch.from_numpy(value).to(primary.device) for name, value in made.items()}

    def forward(self, primary: torch.Tensor, *references: torch.Tensor) -> Any:
        given = dict(zip(self.fed_names, (primary, *references)))
        given.update(self.auxiliary(primary))
        return self.module(*(given[name] for name in self.input_names))


class ChosenOutput(nn.Module):
    """A converted graph with several outputs, reduced to the one that holds the logits (``logits_output``), as
    onnxruntime's path takes them."""

    def __init__(self, module: nn.Module, index: int = 0) -> None:
        super().__init__()
        self.module = module
        self.index = index

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        output = self.module(*inputs)
        return output[self.index] if isinstance(output, (tuple, list)) else output


def verified_conversion(model: "OnnxModel") -> nn.Module:
    """The whole graph through ``convert_onnx_graph``; it must reproduce onnxruntime's logits on
    example inputs, or it is refused."""
    import numpy as np

    failures = []
    for attempt, module in convert_onnx_graph(model.proto):
        if isinstance(module, str):
            failures.append(module)
            continue
        if len(model.proto.graph.output) > 1:
            module = ChosenOutput(module, logits_output(model.proto))
        if model.batch_of_one:
            from ser_audit.models.batch_of_one import OneAtATime

            module = OneAtATime(module, [model.frontend.layout.index("batch")] * len(model.input_names))
        inputs = model.example_inputs(batch=2)
        try:
            with torch.no_grad():
                converted = module(*(torch.from_numpy(inputs[name]) for name in model.input_names)).numpy()
        except Exception as error:  # a converted op that fails on the example (onnx2torch raises many types)
            failures.append(f"{attempt}: the converted graph fails to run ({str(error).splitlines()[0][:160]})")
            continue
        reference = model.forward(inputs).logits
        if converted.shape == reference.shape and np.abs(converted - reference).max() <= 1e-3 * max(
                1.0, float(np.abs(reference).max())):
            return module
        failures.append(f"{attempt}: the converted graph disagrees with onnxruntime")
    raise ModelError(
        f"model {model.path}: no differentiable path (onnx2torch cannot convert it: {'; '.join(failures)}); "
        "white-box probes need a torch model or a convertible ONNX graph"
    )


def module_names_hint(module: nn.Module) -> str:
    """What a user can name instead, for a layer name the model's torch path does not have: a path converted
    from a graph (ONNX through onnx2torch) carries node names, not the layer names ``ser-audit layers`` lists."""
    named = [name for name, child in module.named_modules() if name and not list(child.children())]
    if any(name.startswith("node_") or "/" in name for name in named):
        return (f"this path is converted from a graph, whose modules carry its node names ({', '.join(named[:4])}, "
                "...), not the layer names: give the model as python:module:factory with --weights to name a layer")
    return f"its modules are {', '.join(named[:6])}{', ...' if len(named) > 6 else ''}"
