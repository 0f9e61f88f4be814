"""Writing a torch module as ONNX, TorchScript or a torch.export program, front-end spec embedded."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from ser_audit.errors import ConfigError, ModelError
from ser_audit.files import atomic_write
from ser_audit.frontend.features import FrontEnd
from ser_audit.frontend.spec import EXTRA_FILE, METADATA_KEY, FrontEndSpec
from ser_audit.models.quiet import quiet_torch

OnnxExporter = Literal["auto", "dynamo", "torchscript"]


def export_model(module: nn.Module, frontend: FrontEndSpec, out: Path, *, onnx_exporter: OnnxExporter = "auto") -> None:
    """Write ``module`` as ONNX (.onnx), TorchScript (.pt) or a torch.export program (.pt2).

    ``onnx_exporter``: ``dynamo`` (records module scopes, hence layer names), ``torchscript``
    (the older exporter many tools still use; no intermediate shapes), or ``auto`` (dynamo,
    then the TorchScript exporter for modules torch.export cannot capture).
    """
    module = module.eval()
    inputs = example_inputs(frontend)
    suffix = out.suffix.lower()
    with quiet_torch():
        if suffix == ".onnx":
            atomic_write(out, lambda path: _export_onnx(module, inputs, frontend, path, onnx_exporter))
        elif suffix == ".pt":
            traced = torch.jit.trace(module, inputs)
            atomic_write(out, lambda path: torch.jit.save(traced, str(path), _extra_files={EXTRA_FILE: frontend.to_json()}))
        elif suffix == ".pt2":
            program = _torch_export(module, inputs, frontend)
            atomic_write(out, lambda path: torch.export.save(program, str(path), extra_files={EXTRA_FILE: frontend.to_json()}))
        else:
            raise ConfigError(f"--out {out}: use a .onnx, .pt (TorchScript) or .pt2 (torch.export) file name")


def example_inputs(frontend: FrontEndSpec) -> tuple[torch.Tensor, ...]:
    """One distinct tensor per input; lengths differ for variable-length models so that the
    exporters do not conclude that the inputs must share a time axis (or are the same tensor)."""
    frontend_module = FrontEnd(frontend)
    tensors = []
    for index in range(1 + len(frontend.extra_inputs)):
        samples = frontend.num_samples or int(frontend.sample_rate * (1.0 + 0.25 * index))
        with torch.no_grad():
            tensors.append(frontend_module(0.01 * torch.randn(2, samples, generator=torch.Generator().manual_seed(index))))
    return tuple(tensors)


def _dynamic_shapes(frontend: FrontEndSpec, n_inputs: int, *, time: bool = True) -> tuple[dict[int, Any], ...]:
    """Batch is always dynamic; so is time, per input, for variable-length front-ends."""
    batch = torch.export.Dim("batch", min=1)
    if frontend.duration_s is not None or not time:
        return tuple({0: batch} for _ in range(n_inputs))
    time_axis = frontend.layout.index("time")
    return tuple({0: batch, time_axis: torch.export.Dim(f"time{i}", min=8)} for i in range(n_inputs))


def _torch_export(module: nn.Module, inputs: tuple[torch.Tensor, ...], frontend: FrontEndSpec) -> Any:
    """torch.export with a dynamic time axis, or, where the module specialises it (an RNN's
    unrolled loop), at the example length."""
    try:
        return torch.export.export(module, inputs, dynamic_shapes=_dynamic_shapes(frontend, len(inputs)))
    except Exception:  # torch.export raises UserError and friends when a dimension specialises
        return torch.export.export(module, inputs, dynamic_shapes=_dynamic_shapes(frontend, len(inputs), time=False))


def _export_onnx(module: nn.Module, inputs: tuple[torch.Tensor, ...], frontend: FrontEndSpec, path: Path,
                 exporter: OnnxExporter) -> None:
    import onnx

    names = [frontend.input_name, *(extra.name for extra in frontend.extra_inputs)]
    proto = None
    dynamo_error: Exception | None = None
    if exporter in ("auto", "dynamo"):
        try:
            program = torch.onnx.export(
                module, inputs, dynamo=True, input_names=names, output_names=["logits"],
                dynamic_shapes=_dynamic_shapes(frontend, len(inputs)), verbose=False,
            )
            assert program is not None  # dynamo=True always returns the program
            proto = program.model_proto
        except Exception as error:  # the exporter raises many types
            if exporter == "dynamo":
                raise ModelError(f"ONNX export failed (dynamo exporter: {str(error).splitlines()[0]})") from error
            dynamo_error = error
    if proto is None:
        time_axis = frontend.layout.index("time")
        axes = {
            name: ({0: "batch"} if frontend.duration_s else {0: "batch", time_axis: f"time{i}"})
            for i, name in enumerate(names)
        }
        buffer = io.BytesIO()
        try:
            torch.onnx.export(module, inputs, buffer,  # type: ignore[arg-type]  # a file-like works
                              dynamo=False, input_names=names, output_names=["logits"],
                              dynamic_axes=axes)
        except Exception as error:  # the exporter raises many types
            before = f"torch.export: {str(dynamo_error).splitlines()[0]}; " if dynamo_error else ""
            raise ModelError(f"ONNX export failed ({before}TorchScript exporter: {error})") from error
        proto = onnx.load_from_string(buffer.getvalue())
    onnx.helper.set_model_props(proto, {METADATA_KEY: frontend.to_json()})
    onnx.save(proto, str(path))
