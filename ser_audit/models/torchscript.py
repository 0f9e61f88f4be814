"""TorchScript archives (``torch.jit.save``), tapped through an in-memory ONNX conversion.

A loaded ScriptModule takes no forward hooks, so the graph is exported once with the
TorchScript ONNX exporter (which keeps module scopes, hence the same layer names as the
eager original) and run by onnxruntime. The ScriptModule itself stays available for gradients.
"""

from __future__ import annotations

import io
from pathlib import Path

import onnx
import torch

from ser_audit.errors import ModelError
from ser_audit.frontend.spec import EXTRA_FILE, FrontEndSpec, missing_spec_error, parse_spec
from ser_audit.models.onnx_model import GraphBackedModel, OnnxModel
from ser_audit.models.quiet import quiet_torch


class TorchScriptModel(GraphBackedModel):
    format = "torchscript"

    def __init__(self, script_module: torch.jit.ScriptModule, frontend: FrontEndSpec, *, path: Path) -> None:
        self.script_module = script_module.eval()
        self.frontend = frontend
        self.path = path
        self._layers = None
        example = self.example_inputs(batch=2)
        tensors = tuple(torch.from_numpy(example[name]) for name in self.input_names)
        buffer = io.BytesIO()
        try:
            with quiet_torch():
                torch.onnx.export(
                    self.script_module, tensors, buffer,  # type: ignore[arg-type]  # a file-like works
                    dynamo=False, input_names=self.input_names,
                    output_names=["logits"], dynamic_axes={name: {0: "batch"} for name in self.input_names},
                )
        except Exception as error:  # the exporter raises many types
            raise ModelError(f"model {path}: cannot trace the TorchScript graph for tapping ({error})") from None
        self.graph = OnnxModel(onnx.load_from_string(buffer.getvalue()), frontend, path=path)

    def differentiable(self) -> torch.nn.Module:
        return self.script_module


def load_torchscript(path: Path, frontend: FrontEndSpec | None) -> TorchScriptModel:
    extra = {EXTRA_FILE: ""}
    try:
        with quiet_torch():
            module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    except RuntimeError as error:
        raise ModelError(f"model {path} is not a loadable TorchScript archive ({str(error).splitlines()[0]})") from None
    if frontend is None and extra[EXTRA_FILE]:
        text = extra[EXTRA_FILE]
        frontend = parse_spec(text.decode() if isinstance(text, bytes) else text, origin=f"{path} ({EXTRA_FILE})")
    if frontend is None:
        raise missing_spec_error(str(path))
    return TorchScriptModel(module, frontend, path=path)
