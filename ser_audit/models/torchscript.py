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
from ser_audit.models.eager import LogitsOnly
from ser_audit.models.interface import ANOTHER_LENGTH_S
from ser_audit.models.onnx_model import GraphBackedModel, OnnxModel
from ser_audit.models.quiet import no_stdout, quiet_torch


class TorchScriptModel(GraphBackedModel):
    format = "torchscript"

    def __init__(self, script_module: torch.jit.ScriptModule, frontend: FrontEndSpec, *, path: Path) -> None:
        self.script_module = script_module.eval()
        self.frontend = frontend
        self.path = path
        self._layers = None
        example = self.example_inputs(batch=2)
        tensors = tuple(torch.from_numpy(example[name]) for name in self.input_names)
        time_axis = frontend.layout.index("time")
        # A variable-length spec needs a variable time axis, or every utterance but a 1 s one would be refused.
        fed = set(self.fed_names)  # the front-end's features; further inputs keep their own sizes
        axes = {name: ({0: "batch", time_axis: f"time{i}"} if name in fed and not frontend.duration_s else {0: "batch"})
                for i, name in enumerate(self.input_names)}
        buffer = io.BytesIO()
        try:
            with quiet_torch(), no_stdout():
                torch.onnx.export(
                    self.script_module, tensors, buffer,  # type: ignore[arg-type]  # a file-like works
                    dynamo=False, input_names=self.input_names, output_names=["logits"], dynamic_axes=axes,
                )
        except Exception as error:  # the exporter raises many types
            lines = [line.strip() for line in str(error).replace("\\n", "\n").splitlines() if line.strip()]
            reason = (lines[0].split(" [Caused by")[0].strip() if lines else type(error).__name__)[:300]
            raise ModelError(f"model {path}: its TorchScript graph cannot be converted for tapping ({reason}); export "
                             "the model to ONNX or with torch.export (.pt2), or give it as python:module:factory with "
                             "--weights") from None
        self.graph = OnnxModel(onnx.load_from_string(buffer.getvalue()), frontend, path=path)
        if frontend.num_samples is None:
            self._check_variable_length(path)

    def _check_variable_length(self, path: Path) -> None:
        """A traced graph may have baked its example's length into a reshape; find out now, not mid-run."""
        try:
            self.forward(self.example_inputs(batch=2, seconds=ANOTHER_LENGTH_S))
        except Exception as error:  # onnxruntime raises its own types
            reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
            raise ModelError(f"model {path} runs only at the length it was converted at (1 s; at {ANOTHER_LENGTH_S} s: "
                             f"{reason}): a traced model may have fixed its input length; give a front-end spec with "
                             "duration_s (--frontend), or script or export the model with a dynamic time axis") from None

    def differentiable(self) -> torch.nn.Module:
        return LogitsOnly(self.script_module)  # a scripted (logits, hidden) gives its logits, as every path reads them


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
