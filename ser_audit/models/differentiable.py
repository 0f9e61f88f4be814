"""The differentiable torch path of any loaded model, for gradients (probes) and fine-tuning (hardening)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterator

from torch import nn

from ser_audit.errors import ModelError
from ser_audit.models.interface import TargetModel
from ser_audit.models.quiet import quiet_torch

if TYPE_CHECKING:
    import onnx

    from ser_audit.models.onnx_model import OnnxModel


def torch_module(model: TargetModel) -> nn.Module:
    """A torch module computing the model's logits from its inputs (in the model's input order)."""
    return model.differentiable()


def convert_onnx_graph(proto: "onnx.ModelProto") -> Iterator[tuple[str, nn.Module | str]]:
    """onnx2torch on the graph as it is, then on the graph moved to opset 17 (onnx2torch predates
    the opset-18 forms that torch's dynamo exporter writes, e.g. ReduceMax with axes as an input).
    Yields (attempt, module) for each conversion that succeeds and (attempt, reason) for each that fails,
    so callers can check a candidate and go on to the next."""
    import onnx
    from onnx import version_converter
    from onnx2torch import convert

    from ser_audit.models.onnx_converters import normalise, register

    register()
    proto_copy = onnx.ModelProto()
    proto_copy.CopyFrom(proto)
    normalise(proto_copy)
    proto = proto_copy
    for attempt in ("as exported", "at opset 17"):
        try:
            candidate = proto
            if attempt == "at opset 17":
                candidate = version_converter.convert_version(proto, 17)
                for node in candidate.graph.node:
                    for attribute in node.attribute:
                        if node.op_type == "Reshape" and attribute.name == "allowzero":
                            attribute.i = 0  # torch graphs never reshape to a literal 0-sized axis
                onnx.checker.check_model(candidate)
            with quiet_torch():
                yield attempt, convert(candidate).eval()
        except Exception as error:  # onnx2torch / the version converter raise many types per unsupported op
            yield attempt, f"{attempt}: {str(error).splitlines()[0][:160]}"


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
