"""The differentiable torch path of any loaded model, for gradients (probes) and fine-tuning (hardening)."""

from __future__ import annotations

from torch import nn

from ser_audit.errors import ModelError
from ser_audit.models.eager import EagerTorchModel
from ser_audit.models.exported import ExportedProgramModel
from ser_audit.models.interface import TargetModel
from ser_audit.models.onnx_model import OnnxModel
from ser_audit.models.quiet import quiet_torch
from ser_audit.models.torchscript import TorchScriptModel


def torch_module(model: TargetModel) -> nn.Module:
    """A torch module computing the model's logits from its inputs (in the model's input order).

    ONNX graphs are converted with onnx2torch; a graph it cannot convert raises ModelError,
    and callers may fall back to gradient-free estimates.
    """
    if isinstance(model, EagerTorchModel):
        return model.module
    if isinstance(model, TorchScriptModel):
        return model.script_module
    if isinstance(model, ExportedProgramModel):
        return model.program.module()
    if isinstance(model, OnnxModel):
        return _convert_onnx(model)
    raise ModelError(f"model {model.path}: no differentiable path for format {model.format}")


def _convert_onnx(model: OnnxModel) -> nn.Module:
    """onnx2torch on the graph as it is, else on the graph moved to opset 17 (onnx2torch predates
    the opset-18 forms that torch's dynamo exporter writes, e.g. ReduceMax with axes as an input).
    The conversion must reproduce onnxruntime's logits on example inputs, or it is refused."""
    import numpy as np
    import onnx
    import torch
    from onnx import version_converter
    from onnx2torch import convert

    failures = []
    for attempt in ("as exported", "at opset 17"):
        try:
            proto = model.proto
            if attempt == "at opset 17":
                proto = version_converter.convert_version(model.proto, 17)
                for node in proto.graph.node:
                    for attribute in node.attribute:
                        if node.op_type == "Reshape" and attribute.name == "allowzero":
                            attribute.i = 0  # torch graphs never reshape to a literal 0-sized axis
                onnx.checker.check_model(proto)
            with quiet_torch():
                module = convert(proto).eval()
        except Exception as error:  # onnx2torch / the version converter raise many types per unsupported op
            failures.append(f"{attempt}: {str(error).splitlines()[0][:160]}")
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
