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
        from onnx2torch import convert

        try:
            with quiet_torch():
                return convert(model.proto).eval()
        except Exception as error:  # onnx2torch raises NotImplementedError, KeyError, ... per unsupported op
            raise ModelError(
                f"model {model.path}: no differentiable path (onnx2torch cannot convert it: {error}); "
                "white-box probes need a torch model or a convertible ONNX graph"
            ) from None
    raise ModelError(f"model {model.path}: no differentiable path for format {model.format}")
