"""The differentiable torch path of any loaded model, for gradients (probes) and fine-tuning (hardening)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

from ser_audit.errors import ModelError
from ser_audit.models.interface import TargetModel
from ser_audit.models.onnx_converters import convert_onnx_graph

if TYPE_CHECKING:

    from ser_audit.models.onnx_model import OnnxModel


def torch_module(model: TargetModel) -> nn.Module:
    """A torch module computing the model's logits from its inputs (in the model's input order)."""
    return model.differentiable()


def verified_conversion(model: "OnnxModel") -> nn.Module:
    """The whole graph through ``convert_onnx_graph``; it must reproduce onnxruntime's logits on
    example inputs, or it is refused."""
    import numpy as np
    import torch

    failures = []
    for attempt, module in convert_onnx_graph(model.proto):
        if isinstance(module, str):
            failures.append(module)
            continue
        inputs = model.example_inputs(batch=2)
        with torch.no_grad():
            converted = module(*(torch.from_numpy(inputs[name]) for name in model.input_names)).numpy()
        reference = model.forward(inputs).logits
        if np.abs(converted - reference).max() <= 1e-3 * max(1.0, float(np.abs(reference).max())):
            return module
        failures.append(f"{attempt}: the converted graph disagrees with onnxruntime")
    raise ModelError(
        f"model {model.path}: no differentiable path (onnx2torch cannot convert it: {'; '.join(failures)}); "
        "white-box probes need a torch model or a convertible ONNX graph"
    )
