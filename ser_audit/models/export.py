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
from ser_audit.models.differentiable import WithAuxiliaryInputs
from ser_audit.models.quiet import quiet_export, quiet_torch

OnnxExporter = Literal["auto", "dynamo", "torchscript"]


def export_model(module: nn.Module, frontend: FrontEndSpec, out: Path, *, onnx_exporter: OnnxExporter = "auto") -> None:
    """Write ``module`` as ONNX (.onnx), TorchScript (.pt) or a torch.export program (.pt2).

    ``onnx_exporter``: ``dynamo`` (records module scopes, hence layer names), ``torchscript``
    (the older exporter many tools still use; no intermediate shapes), or ``auto`` (dynamo,
    then the TorchScript exporter for modules torch.export cannot capture).
    """
    module, inputs, auxiliary = _traceable(module.eval(), frontend)
    suffix = out.suffix.lower()
    with quiet_torch():
        if suffix == ".onnx":
            atomic_write(out, lambda path: _export_onnx(module, inputs, frontend, path, onnx_exporter, auxiliary))
        elif suffix == ".pt":
            traced = torch.jit.trace(module, inputs)
            atomic_write(out, lambda path: torch.jit.save(traced, str(path), _extra_files={EXTRA_FILE: frontend.to_json()}))
        elif suffix == ".pt2":
            program = _torch_export(module, inputs, frontend, auxiliary)
            atomic_write(out, lambda path: torch.export.save(program, str(path), extra_files={EXTRA_FILE: frontend.to_json()}))
        else:
            raise ConfigError(f"--out {out}: use a .onnx, .pt (TorchScript) or .pt2 (torch.export) file name")


def check_exportable(module: nn.Module, frontend: FrontEndSpec, out: Path) -> None:
    """Refuse, before minutes of training, an ``out`` format the module cannot be written as.

    Only torch.export is tried (a trained copy has the same graph): it is the exporter that fails on
    models that load and run, e.g. an onnx2torch conversion with data-dependent shapes.
    """
    if out.suffix.lower() != ".pt2":
        return
    training = module.training
    placed_on = next(module.parameters(), torch.empty(0)).device  # harden may have put the model on a GPU
    captured, inputs, auxiliary = _traceable(module.eval(), frontend, placed_on)
    try:
        with quiet_torch():
            _torch_export(captured, inputs, frontend, auxiliary)
    except ModelError as error:
        raise ConfigError(f"--out {out}: {error}") from None
    finally:
        module.train(training)


def _traceable(module: nn.Module, frontend: FrontEndSpec, device: torch.device | None = None
               ) -> tuple[nn.Module, tuple[torch.Tensor, ...], dict[str, dict[int, str]]]:
    """What the exporters trace: the module, example inputs on ``device`` and each auxiliary input's dynamic axes."""
    inputs = tuple(tensor.to(device) for tensor in example_inputs(frontend)) if device else example_inputs(frontend)
    if isinstance(module, WithAuxiliaryInputs):
        # The torch path over every input in model order: the written model takes its auxiliary inputs again.
        return _with_auxiliary(module, inputs)
    return module, inputs, {}


def example_inputs(frontend: FrontEndSpec) -> tuple[torch.Tensor, ...]:
    """One distinct tensor per input; lengths differ for variable-length models so that the
    exporters do not conclude that the inputs must share a time axis (or are the same tensor)."""
    frontend_module = FrontEnd(frontend)
    tensors = []
    for index in range(1 + len(frontend.reference_inputs)):
        samples = frontend.num_samples or int(frontend.sample_rate * (1.0 + 0.25 * index))
        with torch.no_grad():
            tensors.append(frontend_module(0.01 * torch.randn(2, samples, generator=torch.Generator().manual_seed(index))))
    return tuple(tensors)


def _with_auxiliary(wrapper: WithAuxiliaryInputs, fed: tuple[torch.Tensor, ...]
                    ) -> tuple[nn.Module, tuple[torch.Tensor, ...], dict[str, dict[int, str]]]:
    """The wrapped module, example inputs for every input in model order, and each auxiliary input's
    dynamic axes (``batch``, or ``time0``: the primary input's length), read by making them at two sizes."""
    given = dict(zip(wrapper.fed_names, fed))
    made = wrapper.auxiliary(fed[0])
    time_axis = wrapper.frontend.layout.index("time")
    wider = wrapper.auxiliary(torch.cat([fed[0], fed[0][:1]]))
    longer = wrapper.auxiliary(torch.cat([fed[0], fed[0]], dim=time_axis))
    axes = {name: {**{a: "time0" for a, (x, y) in enumerate(zip(made[name].shape, longer[name].shape)) if x != y},
                   **{a: "batch" for a, (x, y) in enumerate(zip(made[name].shape, wider[name].shape)) if x != y}}
            for name in made}
    inputs = tuple({**given, **made}[name] for name in wrapper.input_names)
    return wrapper.module, inputs, axes


def _dynamic_shapes(frontend: FrontEndSpec, n_inputs: int, *, time: bool = True,
                    auxiliary: dict[str, dict[int, str]] | None = None) -> tuple[dict[int, Any], ...]:
    """Batch is always dynamic; so is time, per input, for variable-length front-ends. Auxiliary inputs
    (in model order among the others) share the primary input's batch and time."""
    batch = torch.export.Dim("batch", min=1)
    variable = frontend.duration_s is None and time
    time_axis = frontend.layout.index("time")
    times = [torch.export.Dim(f"time{i}", min=8) for i in range(n_inputs)]
    dims = {"batch": batch, "time0": times[0]}
    shapes: list[dict[int, Any]] = []
    fed = 0
    for extra in [None, *frontend.extra_inputs][:n_inputs]:
        if extra is not None and auxiliary is not None and extra.name in auxiliary:
            shapes.append({axis: dims[kind] for axis, kind in auxiliary[extra.name].items()
                           if kind == "batch" or variable})
            continue
        shapes.append({0: batch, time_axis: times[fed]} if variable else {0: batch})
        fed += 1
    return tuple(shapes)


def _torch_export(module: nn.Module, inputs: tuple[torch.Tensor, ...], frontend: FrontEndSpec,
                  auxiliary: dict[str, dict[int, str]] | None = None) -> Any:
    """torch.export with a dynamic time axis, or, where the module specialises it (an RNN's
    unrolled loop), at the example length."""
    try:
        with quiet_export():
            return torch.export.export(module, inputs, dynamic_shapes=_dynamic_shapes(frontend, len(inputs),
                                                                                      auxiliary=auxiliary))
    except Exception:  # torch.export raises UserError and friends when a dimension specialises
        try:
            with quiet_export():
                return torch.export.export(module, inputs, dynamic_shapes=_dynamic_shapes(
                    frontend, len(inputs), time=False, auxiliary=auxiliary))
        except Exception as error:  # data-dependent shapes (an onnx2torch conversion) defeat torch.export
            first = next((line for line in str(error).splitlines() if line.strip()), type(error).__name__)
            raise ModelError(f"torch.export cannot capture the model ({first[:160]}); write .onnx or .pt instead") \
                from None


def _export_onnx(module: nn.Module, inputs: tuple[torch.Tensor, ...], frontend: FrontEndSpec, path: Path,
                 exporter: OnnxExporter, auxiliary: dict[str, dict[int, str]] | None = None) -> None:
    import onnx

    names = [frontend.input_name, *(extra.name for extra in frontend.extra_inputs)]
    proto = None
    dynamo_error: Exception | None = None
    if exporter in ("auto", "dynamo"):
        try:
            program = torch.onnx.export(
                module, inputs, dynamo=True, input_names=names, output_names=["logits"],
                dynamic_shapes=_dynamic_shapes(frontend, len(inputs), auxiliary=auxiliary), verbose=False,
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
        axes.update({name: {a: kind for a, kind in dims.items() if kind == "batch" or not frontend.duration_s}
                     for name, dims in (auxiliary or {}).items()})
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
