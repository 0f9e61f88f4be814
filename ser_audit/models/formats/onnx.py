"""``*.onnx``: run with onnxruntime, differentiable through onnx2torch."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ser_audit.models.formats import ModelRequest

if TYPE_CHECKING:
    from ser_audit.models.interface import TargetModel


class OnnxFormat:
    name = "onnx"
    priority = 20

    def claims(self, request: ModelRequest) -> bool:
        return request.path.suffix.lower() == ".onnx" and request.path.is_file()

    def load(self, request: ModelRequest) -> "TargetModel":
        from ser_audit.models.loading import sidecar_spec
        from ser_audit.models.onnx_model import load_onnx

        return load_onnx(request.file(), request.frontend or sidecar_spec(request.path))


FORMAT = OnnxFormat()
