"""onnx2torch converters for the ops real SER models contain and onnx2torch lacks: LSTM and GRU,
Gelu (transformer blocks), the opset-18 reductions (axes as an input) and the newer versions of ops whose later opsets
only added tensor types.

Registered once, on first use, so that ONNX graphs with recurrent layers, and graphs from
torch's dynamo exporter (opset 18 and later), get white-box gradients instead of a
gradient-free estimate. Each converter rebuilds the torch layer
(``nn.LSTM``/``nn.GRU``) from the ONNX weights, reordering the gates (ONNX: input,
output, forget, cell for LSTM and update, reset, hidden for GRU; torch: input, forget,
cell, output and reset, update, new), and returns the op's outputs in ONNX layout.
Only the forms that torch itself exports are taken (default activations, no clip, no
peepholes, no per-sequence lengths); anything else is refused with the reason, so the
caller can say which op forced a fallback.
"""

from __future__ import annotations

from typing import Iterator

import onnx
import torch
from torch import nn

from ser_audit.models.quiet import quiet_torch

_REGISTERED = False

# Row blocks of ONNX's stacked gate weights, in torch's gate order.
_LSTM_ORDER = (0, 2, 3, 1)  # ONNX i, o, f, c  -> torch i, f, c(g), o
_GRU_ORDER = (1, 0, 2)  # ONNX z, r, h -> torch r, z, n


def normalise(proto: onnx.ModelProto) -> None:
    """Forms exporters write that onnx2torch misreads, rewritten in place to equivalent ones:

    - an empty input name is an omitted optional input (``Clip`` with only a lower bound);
      onnx2torch looks it up as a tensor, so trailing ones are removed;
    - ``Identity`` of a weight (the TorchScript exporter's shared parameters): onnx2torch wants
      weights as initialisers, so the copy becomes one;
    - ``Reshape`` with ``allowzero=1``: torch graphs never reshape to a literal 0-sized axis,
      so it means the same as 0, which onnx2torch implements.
    """
    from onnx import numpy_helper

    initialisers = {init.name: init for init in proto.graph.initializer}
    kept = []
    for node in proto.graph.node:
        while node.input and node.input[-1] == "":
            node.input.pop()
        if node.op_type == "Identity" and node.input and node.input[0] in initialisers:
            copy = numpy_helper.from_array(numpy_helper.to_array(initialisers[node.input[0]]), node.output[0])
            proto.graph.initializer.append(copy)
            continue
        if node.op_type == "Reshape":
            for attribute in node.attribute:
                if attribute.name == "allowzero":
                    attribute.i = 0
        kept.append(node)
    del proto.graph.node[:]
    proto.graph.node.extend(kept)


class RecurrentOp(nn.Module):
    """An ONNX LSTM/GRU node as a torch module: ``(X, initial_h[, initial_c])`` to ``(Y, Y_h[, Y_c])``.

    ``Y`` is ``[time, directions, batch, hidden]`` (``layout=0``) or ``[batch, time, directions, hidden]``
    (``layout=1``), as ONNX defines it.
    """

    def __init__(self, layer: nn.LSTM | nn.GRU, *, batch_first: bool, has_h: bool, has_c: bool, outputs: int) -> None:
        super().__init__()
        self.outputs = outputs
        self.layer = layer
        self.batch_first = batch_first
        self.has_h = has_h
        self.has_c = has_c

    def forward(self, x: torch.Tensor, *state: torch.Tensor):  # type: ignore[no-untyped-def]
        directions = 2 if self.layer.bidirectional else 1
        batch = x.shape[0] if self.batch_first else x.shape[1]
        hidden_size = self.layer.hidden_size
        zeros = x.new_zeros(directions, batch, hidden_size)
        h0 = state[0] if self.has_h else zeros
        if isinstance(self.layer, nn.LSTM):
            c0 = state[1 if self.has_h else 0] if self.has_c else zeros
            output, (h_n, c_n) = self.layer(x, (h0, c0))
        else:
            output, h_n = self.layer(x, h0)
            c_n = None
        if self.batch_first:  # [batch, time, directions * hidden] -> [batch, time, directions, hidden]
            y = output.reshape(output.shape[0], output.shape[1], directions, hidden_size)
        else:  # [time, batch, directions * hidden] -> [time, directions, batch, hidden]
            y = output.reshape(output.shape[0], output.shape[1], directions, hidden_size).transpose(1, 2)
        results = (y, h_n) if c_n is None else (y, h_n, c_n)
        return results[0] if self.outputs == 1 else results[: self.outputs]


def _constant(name: str, graph) -> torch.Tensor:  # type: ignore[no-untyped-def]
    from onnx2torch.utils.common import get_const_value

    return torch.as_tensor(get_const_value(name, graph)).float()


def _convert_recurrent(node, graph, *, cell: str):  # type: ignore[no-untyped-def]
    from onnx2torch.utils.common import OnnxMapping, OperationConverterResult

    attributes = node.attributes
    inputs = list(node.input_values) + [""] * 8
    unsupported = [name for name in ("clip", "activations", "activation_alpha", "activation_beta") if name in attributes]
    if attributes.get("activations") in (["Sigmoid", "Tanh", "Tanh"], ["Sigmoid", "Tanh"]):
        unsupported.remove("activations")
    if cell == "lstm" and attributes.get("input_forget", 0):
        unsupported.append("input_forget")
    if cell == "gru" and attributes.get("linear_before_reset", 0) != 1:
        unsupported.append("linear_before_reset=0")
    if inputs[4]:
        unsupported.append("sequence_lens")
    if cell == "lstm" and inputs[7]:
        unsupported.append("peepholes")
    if unsupported:
        raise NotImplementedError(f"{node.operation_type} with {', '.join(unsupported)} is not converted")
    direction = attributes.get("direction", "forward")
    if direction == "reverse":
        raise NotImplementedError(f"{node.operation_type} with direction=reverse is not converted")
    weights, recurrent = _constant(inputs[1], graph), _constant(inputs[2], graph)
    directions, stacked, input_size = weights.shape
    gates = 4 if cell == "lstm" else 3
    hidden_size = stacked // gates
    bias = _constant(inputs[3], graph) if inputs[3] else torch.zeros(directions, 2 * stacked)
    order = _LSTM_ORDER if cell == "lstm" else _GRU_ORDER
    layer_type = nn.LSTM if cell == "lstm" else nn.GRU
    batch_first = attributes.get("layout", 0) == 1
    layer = layer_type(input_size, hidden_size, batch_first=batch_first, bidirectional=direction == "bidirectional")

    def reorder(matrix: torch.Tensor) -> torch.Tensor:
        blocks = matrix.split(hidden_size, dim=0)
        return torch.cat([blocks[i] for i in order], dim=0)

    with torch.no_grad():
        for d in range(directions):
            suffix = "_reverse" if d == 1 else ""
            getattr(layer, f"weight_ih_l0{suffix}").copy_(reorder(weights[d]))
            getattr(layer, f"weight_hh_l0{suffix}").copy_(reorder(recurrent[d]))
            getattr(layer, f"bias_ih_l0{suffix}").copy_(reorder(bias[d, :stacked]))
            getattr(layer, f"bias_hh_l0{suffix}").copy_(reorder(bias[d, stacked:]))
    has_h, has_c = bool(inputs[5]), cell == "lstm" and bool(inputs[6])
    mapped = [inputs[0], *([inputs[5]] if has_h else []), *([inputs[6]] if has_c else [])]
    return OperationConverterResult(
        torch_module=RecurrentOp(layer, batch_first=batch_first, has_h=has_h, has_c=has_c,
                                 outputs=len(node.output_values)),
        onnx_mapping=OnnxMapping(inputs=tuple(mapped), outputs=node.output_values),
    )


def _convert_gelu(node, graph):  # type: ignore[no-untyped-def]
    """``Gelu`` (opset 20; transformer feed-forward blocks): ``nn.GELU`` with the same approximation."""
    from onnx2torch.utils.common import OnnxMapping, OperationConverterResult

    approximate = node.attributes.get("approximate", "none")
    approximate = approximate.decode() if isinstance(approximate, bytes) else approximate
    return OperationConverterResult(
        torch_module=nn.GELU(approximate=approximate),
        onnx_mapping=OnnxMapping(inputs=tuple(node.input_values[:1]), outputs=node.output_values),
    )


def _convert_split_with_num_outputs(node, graph):  # type: ignore[no-untyped-def]
    """``Split`` 18 may name its parts by ``num_outputs``; without ``split`` that is opset 13's equal split."""
    from onnx2torch.node_converters.registry import get_converter
    from onnx2torch.onnx_node import OnnxNode

    proto = onnx.NodeProto()
    proto.CopyFrom(node.proto)
    kept = [a for a in proto.attribute if a.name != "num_outputs"]
    del proto.attribute[:]
    proto.attribute.extend(kept)
    return get_converter("Split", 13)(OnnxNode(proto, node.unique_name), graph)


def _convert_pad_over_every_axis(node, graph):  # type: ignore[no-untyped-def]
    """``Pad`` 18 added an ``axes`` input and 19 ``mode="wrap"``; without either it is opset 13's."""
    from onnx2torch.node_converters.registry import get_converter

    mode = node.attributes.get("mode", "constant")
    if (mode.decode() if isinstance(mode, bytes) else mode) == "wrap":
        raise NotImplementedError("Pad with mode=wrap is not converted")
    if len(node.input_values) > 3 and node.input_values[3]:
        raise NotImplementedError("Pad with an axes input is not converted")
    return get_converter("Pad", 13)(node, graph)


# Ops whose later versions only added element types (bfloat16, float8, int4...): the newest
# onnx2torch converter serves them unchanged.
_TYPE_ONLY_UPDATES = (
    "Acos", "Asin", "Atan", "Cast", "Constant", "ConstantOfShape", "Conv", "ConvTranspose", "Cos", "Dropout", "Elu",
    "Equal", "Flatten", "GlobalAveragePool", "GreaterOrEqual", "HardSigmoid", "HardSwish", "Identity",
    "InstanceNormalization", "IsInf", "IsNaN", "LessOrEqual", "MaxPool", "Reshape", "Round", "Selu", "Shape", "Sin",
    "Softplus", "Softsign", "Squeeze", "Tan", "Transpose", "Unsqueeze",
)
_REDUCTIONS = ("ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax", "ReduceMean", "ReduceMin",
               "ReduceProd", "ReduceSumSquare")


def _convert_reduction_with_axes_input(node, graph):  # type: ignore[no-untyped-def]
    """Opset 18 moved a reduction's axes from an attribute to an input: rewritten to the opset-13 form."""
    from onnx2torch.node_converters.registry import get_converter
    from onnx2torch.onnx_node import OnnxNode

    proto = onnx.NodeProto()
    proto.CopyFrom(node.proto)
    axes = list(proto.input[1:2])
    del proto.input[1:]
    kept = [a for a in proto.attribute if a.name != "noop_with_empty_axes"]
    empty_is_noop = any(a.name == "noop_with_empty_axes" and a.i for a in proto.attribute)
    del proto.attribute[:]
    proto.attribute.extend(kept)
    if axes and axes[0]:
        values = [int(v) for v in _constant(axes[0], graph).long().reshape(-1).tolist()]
        if values:
            proto.attribute.append(onnx.helper.make_attribute("axes", values))
        elif empty_is_noop:
            raise NotImplementedError(f"{node.operation_type} with empty axes and noop_with_empty_axes is not converted")
    elif empty_is_noop:
        raise NotImplementedError(f"{node.operation_type} with noop_with_empty_axes is not converted")
    return get_converter(node.operation_type, 13)(OnnxNode(proto, node.unique_name), graph)


def register() -> None:
    """Add the converters to onnx2torch's registry (idempotent)."""
    global _REGISTERED
    if _REGISTERED:
        return
    import warnings

    import onnx.defs
    from onnx2torch.node_converters.registry import add_converter, get_converter

    # onnx2torch's Slice indexes with a list, which torch warns about on every forward of the converted graph
    # (every FGSM step); it concerns onnx2torch's code, not the user's model, and floods the terminal.
    warnings.filterwarnings("ignore", category=UserWarning, module="onnx2torch")

    history: dict[str, set[int]] = {}
    for schema in onnx.defs.get_all_schemas_with_history():
        if schema.domain == "":
            history.setdefault(schema.name, set()).add(schema.since_version)

    def alias(op: str, version: int, converter) -> None:  # type: ignore[no-untyped-def]
        try:
            add_converter(operation_type=op, version=version)(converter)
        except ValueError:  # onnx2torch already converts this version itself
            pass

    for op in _TYPE_ONLY_UPDATES:
        for version in sorted(history.get(op, ())):
            try:
                get_converter(op, version)
            except NotImplementedError:
                try:
                    alias(op, version, get_converter(op, version - 1))
                except NotImplementedError:  # no earlier converter to stand for it
                    pass
    for op in _REDUCTIONS:
        for version in (18, 20):
            if version in history.get(op, ()):
                alias(op, version, _convert_reduction_with_axes_input)

    alias("Gelu", 20, _convert_gelu)
    alias("Split", 18, _convert_split_with_num_outputs)
    for version in (18, 19):
        alias("Pad", version, _convert_pad_over_every_axis)
    for cell in ("lstm", "gru"):
        for version in (7, 14, 22):
            alias(cell.upper(), version, lambda node, graph, cell=cell: _convert_recurrent(node, graph, cell=cell))
    _REGISTERED = True


def logits_output(proto: "onnx.ModelProto") -> int:
    """Which graph output holds the logits: the one named so (a model may list its probabilities first), else
    the first (a voice-activity model's logits come before its new state)."""
    names = [output.name.lower() for output in proto.graph.output]
    for wanted in ("logits", "logit"):
        if wanted in names:
            return names.index(wanted)
    return next((i for i, name in enumerate(names) if "logit" in name), 0)


def convert_onnx_graph(proto: "onnx.ModelProto") -> Iterator[tuple[str, nn.Module | str]]:
    """onnx2torch on the graph as it is, then on the graph moved to opset 17 (onnx2torch predates
    the opset-18 forms that torch's dynamo exporter writes, e.g. ReduceMax with axes as an input).
    Yields (attempt, module) for each conversion that succeeds and (attempt, reason) for each that fails,
    so callers can check a candidate and go on to the next."""
    import onnx
    from onnx import version_converter
    from onnx2torch import convert

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
