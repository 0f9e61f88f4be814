"""Fine-tuned weights written back into the ONNX graph they came from.

A model given as ONNX is fine-tuned (``harden``) through its onnx2torch conversion, whose
trainable layers are modules named after the graph's nodes (``node_Conv_301``: a Conv1d
holding that node's weight and bias inputs). Exporting that conversion again loses what the
original graph had, a dynamic time axis above all (the converted module computes shapes with
data-dependent tensors that exporters specialise). So the original graph is kept, and each
trained tensor replaces the initialiser it was read from; the result is checked against the
fine-tuned module with onnxruntime before it is written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

from ser_audit.errors import ModelError

# How an onnx2torch module's parameter maps to its node's input: (input position, transform to ONNX layout).
_Slot = tuple[int, Callable[[np.ndarray, onnx.NodeProto], np.ndarray]]


def _same(value: np.ndarray, node: onnx.NodeProto) -> np.ndarray:
    return value


def _gemm_weight(value: np.ndarray, node: onnx.NodeProto) -> np.ndarray:
    trans_b = next((attribute.i for attribute in node.attribute if attribute.name == "transB"), 0)
    return value if trans_b else value.T


_SLOTS: dict[str, dict[str, _Slot]] = {
    "Conv": {"weight": (1, _same), "bias": (2, _same)},
    "ConvTranspose": {"weight": (1, _same), "bias": (2, _same)},
    "Gemm": {"weight": (1, _gemm_weight), "bias": (2, _same)},
    "LayerNormalization": {"weight": (1, _same), "bias": (2, _same)},
    "InstanceNormalization": {"weight": (1, _same), "bias": (2, _same)},
    "BatchNormalization": {"weight": (1, _same), "bias": (2, _same), "running_mean": (3, _same),
                           "running_var": (4, _same)},
}


def write_back(proto: onnx.ModelProto, module: nn.Module) -> onnx.ModelProto:
    """A copy of ``proto`` whose initialisers hold ``module``'s parameters and statistics.

    Raises:
        ModelError: a trained tensor whose initialiser cannot be found (a node renamed or fused by the
            conversion, an op this does not map); the caller then exports the module instead.
    """
    updated = onnx.ModelProto()
    updated.CopyFrom(proto)
    nodes = {node.name: node for node in updated.graph.node}
    initialisers = {init.name: init for init in updated.graph.initializer}
    state: dict[str, torch.Tensor] = dict(module.named_parameters())
    state.update({name: buffer for name, buffer in module.named_buffers() if name.rsplit(".", 1)[-1] in
                  ("running_mean", "running_var")})
    written: set[str] = set()
    for name, tensor in state.items():
        owner, _, attribute = name.rpartition(".")
        # The module may sit inside wrappers (``module.node_Conv_301``): the node is the owner's last part.
        node = nodes.get(owner.rpartition(".")[2])
        slot = _SLOTS.get(node.op_type, {}).get(attribute) if node is not None else None
        if node is None or slot is None or len(node.input) <= slot[0] or node.input[slot[0]] not in initialisers:
            raise ModelError(f"the fine-tuned tensor {name} has no initialiser in the ONNX graph to write it to")
        position, layout = slot
        target = initialisers[node.input[position]]
        value = layout(tensor.detach().cpu().numpy(), node)
        original = numpy_helper.to_array(target)
        if value.shape != original.shape:
            raise ModelError(f"the fine-tuned tensor {name} has shape {value.shape}, its initialiser {original.shape}")
        if target.name in written:  # exporters share equal constants (a norm's ones) between nodes: split them
            target = updated.graph.initializer.add()
            target.name = f"{node.input[position]}.{node.name}"
            node.input[position] = target.name
        written.add(target.name)
        target.CopyFrom(numpy_helper.from_array(value.astype(original.dtype), target.name))
    return updated


def check_written(proto: onnx.ModelProto, module: nn.Module, inputs: dict[str, np.ndarray], atol: float = 1e-3) -> None:
    """onnxruntime on the written graph gives the fine-tuned module's logits, or ModelError."""
    import onnxruntime as ort

    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    graph = session.run(None, inputs)[0]
    with torch.no_grad():
        ours = module(*(torch.from_numpy(value) for value in inputs.values())).detach().cpu().numpy()
    if graph.shape != ours.shape or not np.allclose(graph, ours, atol=atol, rtol=1e-3):
        raise ModelError("the ONNX graph with the fine-tuned weights written back does not reproduce the fine-tuned "
                         f"module (largest difference {float(np.abs(graph - ours).max()):.2g})")


def save(proto: onnx.ModelProto, out: Path) -> None:
    from ser_audit.files import atomic_write

    atomic_write(out, lambda path: onnx.save(proto, str(path)))
