"""torch.export programs (``*.pt2``), tapped through an ONNX conversion of the program.

The dynamo ONNX exporter records each node's module path, so layers keep the eager
names. ``program.module()`` remains the differentiable path.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ser_audit.errors import ModelError
from ser_audit.frontend.spec import EXTRA_FILE, FrontEndSpec, missing_spec_error, parse_spec
from ser_audit.models.eager import logits_of
from ser_audit.models.interface import ANOTHER_LENGTH_S
from ser_audit.models.onnx_model import GraphBackedModel, OnnxModel
from ser_audit.models.quiet import quiet_torch


class ExportedProgramModel(GraphBackedModel):
    format = "torch.export"

    def __init__(self, program: torch.export.ExportedProgram, frontend: FrontEndSpec, *, path: Path) -> None:
        self.program = program
        self.frontend = frontend
        self.path = path
        self._layers = None
        try:
            with quiet_torch():
                onnx_program = torch.onnx.export(program, dynamo=True, verbose=False)
        except Exception as error:  # the exporter raises many types
            raise ModelError(f"model {path}: cannot convert the exported program for tapping ({error})") from None
        assert onnx_program is not None  # dynamo=True always returns the program
        proto = onnx_program.model_proto
        names = [value.name for value in proto.graph.input]
        # The program's own input names replace ours positionally.
        for value, wanted in zip(proto.graph.input, self.input_names):
            for node in proto.graph.node:
                node.input[:] = [wanted if name == value.name else name for name in node.input]
            value.name = wanted
        if len(names) < len(self.input_names):
            raise ModelError(f"model {path} takes {len(names)} inputs; the front-end spec names {self.input_names}")
        self.graph = OnnxModel(proto, frontend, path=path, exported_program=True)
        if frontend.num_samples is None:
            self._check_variable_length(path)

    def _check_variable_length(self, path: Path) -> None:
        """A program's shape guards (``Dim.AUTO`` specialising ``T // 16``, say) may admit only some lengths; the
        ONNX graph would still run others, and the probes, which run the program, would fail mid-run."""
        inputs = self.example_inputs(batch=2, seconds=ANOTHER_LENGTH_S)
        try:
            with torch.no_grad():
                self.program.module()(*(torch.from_numpy(inputs[name]) for name in self.input_names))
        except Exception as error:  # guard failures are AssertionErrors, other mismatches RuntimeErrors
            reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
            raise ModelError(f"model {path}: the exported program does not run at {ANOTHER_LENGTH_S} s of audio "
                             f"({reason}); its guards admit only some lengths: give a front-end spec with duration_s "
                             "(--frontend), or export with a dynamic time dimension (torch.export.Dim with a range)"
                             ) from None

    def differentiable(self) -> torch.nn.Module:
        return _AlwaysInference(self.program.module())


class _AlwaysInference(torch.nn.Module):
    """An exported program's module refuses ``train()``/``eval()``; it already computes in inference
    mode, so switching modes is a no-op here and callers that toggle modes (probes) work unchanged."""

    def __init__(self, module: torch.nn.Module) -> None:
        super().__init__()
        self.module = module

    def train(self, mode: bool = True) -> "_AlwaysInference":
        self.training = mode
        return self

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return logits_of(self.module(*inputs))  # a program returning (logits, hidden) gives its logits


def load_exported(path: Path, frontend: FrontEndSpec | None) -> ExportedProgramModel:
    extra = {EXTRA_FILE: ""}
    try:
        program = torch.export.load(str(path), extra_files=extra)
    except Exception as error:  # torch.export.load raises many types on a bad archive
        raise ModelError(f"model {path} is not a loadable torch.export program ({error})") from None
    if frontend is None and extra[EXTRA_FILE]:
        frontend = parse_spec(extra[EXTRA_FILE], origin=f"{path} ({EXTRA_FILE})")
    if frontend is None:
        raise missing_spec_error(str(path))
    return ExportedProgramModel(program, frontend, path=path)
