"""onnx2torch converters for the ops real SER models contain and onnx2torch lacks: LSTM and GRU.

Registered once, on first use, so that ONNX graphs with recurrent layers get white-box
gradients instead of a gradient-free estimate. Each converter rebuilds the torch layer
(``nn.LSTM``/``nn.GRU``) from the ONNX weights, reordering the gates (ONNX: input,
output, forget, cell for LSTM and update, reset, hidden for GRU; torch: input, forget,
cell, output and reset, update, new), and returns the op's outputs in ONNX layout.
Only the forms that torch itself exports are taken (default activations, no clip, no
peepholes, no per-sequence lengths); anything else is refused with the reason, so the
caller can say which op forced a fallback.
"""

from __future__ import annotations

import onnx
import torch
from torch import nn

_REGISTERED = False

# Row blocks of ONNX's stacked gate weights, in torch's gate order.
_LSTM_ORDER = (0, 2, 3, 1)  # ONNX i, o, f, c  -> torch i, f, c(g), o
_GRU_ORDER = (1, 0, 2)  # ONNX z, r, h -> torch r, z, n


def drop_empty_trailing_inputs(proto: onnx.ModelProto) -> None:
    """An empty input name means an omitted optional input (``Clip`` with only a lower bound);
    onnx2torch looks the empty name up as a tensor, so trailing ones are removed."""
    for node in proto.graph.node:
        while node.input and node.input[-1] == "":
            node.input.pop()


class RecurrentOp(nn.Module):
    """An ONNX LSTM/GRU node as a torch module: ``(X, initial_h[, initial_c])`` to ``(Y, Y_h[, Y_c])``.

    ``Y`` is ``[time, directions, batch, hidden]`` (``layout=0``) or ``[batch, time, directions, hidden]``
    (``layout=1``), as ONNX defines it.
    """

    def __init__(self, layer: nn.LSTM | nn.GRU, *, batch_first: bool, has_h: bool, has_c: bool) -> None:
        super().__init__()
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
        return (y, h_n) if c_n is None else (y, h_n, c_n)


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
        torch_module=RecurrentOp(layer, batch_first=batch_first, has_h=has_h, has_c=has_c),
        onnx_mapping=OnnxMapping(inputs=tuple(mapped), outputs=node.output_values),
    )


def register() -> None:
    """Add the converters to onnx2torch's registry (idempotent)."""
    global _REGISTERED
    if _REGISTERED:
        return
    from onnx2torch.node_converters.registry import add_converter

    for cell in ("lstm", "gru"):
        for version in (7, 14, 22):
            try:
                add_converter(operation_type=cell.upper(), version=version)(
                    lambda node, graph, cell=cell: _convert_recurrent(node, graph, cell=cell))
            except ValueError:  # a newer onnx2torch converts it itself: keep its converter
                pass
    _REGISTERED = True
