"""ONNX models: intermediate tensors promoted to graph outputs, one onnxruntime session for all taps.

Layer names follow the torch module that produced a node when the exporter recorded it
(``pkg.torch.onnx.name_scopes`` from the dynamo exporter, ``/block/conv/Conv`` node names
from the TorchScript exporter), so a model exported from torch lists the same layers as
its eager original. Each module contributes the output of its last node.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import onnx

from ser_audit.errors import ModelError
from ser_audit.frontend.spec import METADATA_KEY, FrontEndSpec, parse_spec
from ser_audit.models.interface import ForwardResult, TargetModel

# Nodes that compute no activation of their own.
_BOOKKEEPING_OPS = {"Constant", "Shape", "Gather", "Unsqueeze", "Concat", "ConstantOfShape", "Cast", "Range", "Slice"}


def _module_scope(node: onnx.NodeProto) -> str | None:
    for prop in node.metadata_props:
        if prop.key == "pkg.torch.onnx.name_scopes":
            scopes = ast.literal_eval(prop.value)
            return scopes[-2] if len(scopes) >= 2 and scopes[-2] else None
    if node.name.startswith("/") and node.name.count("/") >= 2:
        parts = node.name.strip("/").split("/")[:-1]
        if len(parts) >= 2 and parts[-1].startswith(parts[-2] + "."):
            return parts[-1]  # the TorchScript exporter sometimes spells the full path itself
        return ".".join(parts)
    return None


def onnx_layers(graph: onnx.GraphProto) -> list[tuple[str, str, str]]:
    """(layer name, op type, tensor name) per module, in graph order.

    In a graph exported from torch, operations outside any module (functional glue such as
    ``x + condition`` in a forward method) are not layers, as they are not in eager torch;
    a graph without module scopes lists every operation's output instead.
    """
    initializers = {init.name for init in graph.initializer}
    scopes = [_module_scope(node) for node in graph.node]
    scoped = any(scopes)
    layers: dict[str, tuple[str, str]] = {}
    for node, scope in zip(graph.node, scopes):
        if not node.output or node.op_type in _BOOKKEEPING_OPS:
            continue
        tensor = node.output[0]
        if tensor in initializers or (scoped and scope is None):
            continue
        name = scope or tensor
        layers.pop(name, None)  # re-insert so order is that of the module's last node
        layers[name] = (node.op_type, tensor)
    return [(name, op, tensor) for name, (op, tensor) in layers.items()]


def read_frontend(proto: onnx.ModelProto, origin: str) -> FrontEndSpec | None:
    for prop in proto.metadata_props:
        if prop.key == METADATA_KEY:
            return parse_spec(prop.value, origin=f"{origin} (metadata {METADATA_KEY})")
    return None


class OnnxModel(TargetModel):
    """An ONNX graph run by onnxruntime on the CPU."""

    format = "onnx"

    def __init__(self, proto: onnx.ModelProto, frontend: FrontEndSpec, *, path: Path | None) -> None:
        self.path = path
        self.frontend = frontend
        self.proto = proto
        self._layers = None
        self._layer_table = onnx_layers(proto.graph)
        self._tensor_of = {name: tensor for name, _, tensor in self._layer_table}
        graph_inputs = [i.name for i in proto.graph.input if i.name not in {x.name for x in proto.graph.initializer}]
        missing = [name for name in self.input_names if name not in graph_inputs]
        if missing:
            raise ModelError(
                f"model {path}: the front-end spec names input(s) {missing} but the graph has {graph_inputs}; "
                "fix input_name/extra_inputs in the front-end spec"
            )
        self._logits_name = proto.graph.output[0].name
        # One session per set of taps: every extra graph output keeps onnxruntime from fusing
        # the layers it splits, so the graph as shipped runs untapped and each tap set alone.
        self._sessions = {(): self._session(proto)}

    def _session(self, proto: onnx.ModelProto):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        # onnxruntime threads otherwise spin after each run and starve the pooling that follows.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            return onnxruntime.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own untyped exceptions
            raise ModelError(f"model {self.path} cannot be loaded by onnxruntime: {str(error).splitlines()[0]}") from None

    def _layer_kinds(self) -> list[tuple[str, str]]:
        return [(name, op) for name, op, _ in self._layer_table]

    def forward(self, inputs: Mapping[str, np.ndarray], taps: Sequence[str] = ()) -> ForwardResult:
        names = [self._logits_name, *(self._tensor_of[name] for name in taps)]
        feed = {name: np.ascontiguousarray(inputs[name], dtype=np.float32) for name in self.input_names}
        key = tuple(sorted(set(names[1:])))
        if key not in self._sessions:
            if len(self._sessions) > 4:
                del self._sessions[next(k for k in self._sessions if k)]
            self._sessions[key] = self._session(_with_outputs(self.proto, key))
        outputs = self._sessions[key].run(names, feed)
        return ForwardResult(
            logits=outputs[0], layers={name: np.asarray(value, dtype=np.float32) for name, value in zip(taps, outputs[1:])}
        )


def _with_outputs(proto: onnx.ModelProto, tensors: Sequence[str]) -> onnx.ModelProto:
    """A copy of the model whose graph also outputs ``tensors``."""
    tapped = onnx.ModelProto()
    tapped.CopyFrom(proto)
    try:
        inferred = onnx.shape_inference.infer_shapes(tapped)
        known = {value.name: value for value in inferred.graph.value_info}
    except Exception:  # shape inference is best effort; outputs can be declared without shapes
        known = {}
    existing = {output.name for output in tapped.graph.output}
    for tensor in tensors:
        if tensor in existing:
            continue
        value = known.get(tensor) or onnx.helper.make_tensor_value_info(tensor, onnx.TensorProto.FLOAT, None)
        tapped.graph.output.append(value)
    return tapped


def load_onnx(path: Path, frontend: FrontEndSpec | None) -> OnnxModel:
    """Load an ONNX file; the front-end spec comes from the argument or the model's metadata."""
    try:
        proto = onnx.load(str(path))
    except Exception as error:  # protobuf's DecodeError and friends
        raise ModelError(
            f"model {path} is not a valid ONNX file ({type(error).__name__}); re-export it or check the path"
        ) from None
    if not proto.graph.node:
        raise ModelError(f"model {path} is not a valid ONNX file (its graph has no nodes)")
    spec = frontend or read_frontend(proto, str(path))
    if spec is None:
        from ser_audit.frontend.spec import missing_spec_error

        raise missing_spec_error(str(path))
    return OnnxModel(proto, spec, path=path)
