"""The target's own sub-network downstream of a tapped layer, for P0's same-architecture attacker.

The sub-network runs from the tap to the input of the model's last linear layer (the
emotion head), so an attacker can put its own head there, starting from the target's
weights. Eager modules are split with torch.fx; ONNX graphs (and TorchScript and
torch.export models, which are tapped through ONNX) are cut node by node, which needs
no shape information in the graph, and converted back with onnx2torch. When the part
after the tap is not a function of the tap alone (a skip connection from before it, a
second input, an RNN's state) or cannot be converted, ``Unavailable`` says why, so the
report can too.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import torch
from torch import fx, nn

if TYPE_CHECKING:
    import onnx


class Unavailable(Exception):
    """The downstream sub-network of a layer cannot be extracted; the message says why."""


@dataclass
class Downstream:
    """``body`` maps the tap's activation to the input of the target's emotion head (a copy of it)."""

    body: nn.Module
    head: nn.Linear | None
    description: str


class _FromBatchFirst(nn.Module):
    """Moves the batch axis of a batch-first activation back where the layer keeps it (time-major RNNs)."""

    def __init__(self, body: nn.Module, axis: int) -> None:
        super().__init__()
        self.body = body
        self.axis = axis

    def forward(self, activation: torch.Tensor) -> torch.Tensor:
        return self.body(activation.movedim(0, self.axis))


def reinitialised(body: nn.Module, seed: int) -> nn.Module:
    """A copy of ``body`` with every module that has ``reset_parameters`` re-initialised (seeded): the same
    architecture from a fresh start, for an attacker that must not depend on the target's training."""
    fresh = copy.deepcopy(body)
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        for module in fresh.modules():
            reset = getattr(module, "reset_parameters", None)
            if callable(reset):
                reset()
    finally:
        torch.random.set_rng_state(generator_state)
    return fresh


def from_batch_first(part: Downstream, batch_axis: int) -> Downstream:
    return part if batch_axis == 0 else replace(part, body=_FromBatchFirst(part.body, batch_axis))


class _TapTracer(fx.Tracer):
    """Keeps the tapped module whole (a call_module node) even when it is a custom module,
    which fx would otherwise trace into."""

    def __init__(self, layer: str) -> None:
        super().__init__()
        self.layer = layer

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if module_qualified_name == self.layer:
            return True
        if self.layer.startswith(module_qualified_name + "."):
            return False  # a torch.nn container holding the tap (nn.TransformerEncoder's layers): trace into it
        return super().is_leaf_module(m, module_qualified_name)


def split_eager(module: nn.Module, layer: str) -> Downstream:
    try:
        traced = fx.GraphModule(module, _TapTracer(layer).trace(module))
    except Exception as error:  # fx raises many types on data-dependent control flow
        raise Unavailable(f"torch.fx cannot trace the model ({type(error).__name__}: {str(error).splitlines()[0][:120]})")
    nodes = list(traced.graph.nodes)
    tap = next((n for n in nodes if n.op == "call_module" and n.target == layer), None)
    if tap is None:
        raise Unavailable(f"layer {layer} is not a module call in the traced graph")
    output = next(n for n in nodes if n.op == "output")
    logits = output.args[0]
    # (logits, hidden) or {"logits": ...}: the logits, as every other path reads them (``logits_of``).
    if isinstance(logits, dict):
        logits = logits.get("logits", next(iter(logits.values()), None))
    elif isinstance(logits, (tuple, list)):
        logits = next((item for item in logits if isinstance(item, fx.Node)), None)
    if not isinstance(logits, fx.Node):
        raise Unavailable("the model's output holds no tensor computed in the traced graph")
    head: nn.Linear | None = None
    end = logits
    last = traced.get_submodule(str(logits.target)) if logits.op == "call_module" else None
    if isinstance(last, nn.Linear):
        head = copy.deepcopy(last)
        end = logits.args[0]  # type: ignore[assignment]
    if tap is logits:
        raise Unavailable(f"layer {layer} is the model's output; there is no sub-network after it")
    graph = fx.Graph()
    activation = graph.placeholder("activation")
    env: dict[fx.Node, fx.Node] = {tap: activation}
    needed = _ancestors(end, stop=tap)
    for node in nodes[nodes.index(tap) + 1 :]:
        if node not in needed:
            continue
        if tap in node.all_input_nodes and _is_first_item(node, tap):
            env[node] = activation  # an RNN's (output, state): the tap is the output
            continue
        if tap in node.all_input_nodes and _returns_tuple(traced.get_submodule(layer)):
            raise Unavailable(f"the part after {layer} also reads the layer's state, not only its output")
        for source in node.all_input_nodes:
            if source not in env and source.op != "get_attr":
                raise Unavailable(
                    f"the part after {layer} also reads {_described(source)}, computed before the tap (skip connection "
                    "or second input)"
                )
        env[node] = graph.node_copy(node, lambda n: env[n] if n in env else graph.node_copy(n))
    graph.output(env[end] if end in env else activation)
    body = fx.GraphModule(copy.deepcopy(traced), graph)
    body.graph.eliminate_dead_code()
    body.recompile()
    return Downstream(body=body, head=head, description=f"target's own layers after {layer} (torch.fx split)")


def _is_first_item(node: fx.Node, tap: fx.Node) -> bool:
    import operator

    return node.op == "call_function" and node.target is operator.getitem and node.args == (tap, 0)


def _returns_tuple(module: nn.Module) -> bool:
    return isinstance(module, (nn.RNNBase, nn.MultiheadAttention))


def _ancestors(node: fx.Node, *, stop: fx.Node) -> set[fx.Node]:
    seen: set[fx.Node] = set()
    pending = [node]
    while pending:
        current = pending.pop()
        if current in seen or current is stop:
            continue
        seen.add(current)
        pending.extend(current.all_input_nodes)
    return seen


def cut_onnx(proto: "onnx.ModelProto", tensor: str, logits: str, layer: str, *, dims: list[int | str],
             batch_axis: int = 0) -> Downstream:
    """The graph from ``tensor`` to the input of the final Gemm (or to ``logits``), cut node by node:
    every node the end needs, walking back until the tap. Needs no value_info, so graphs from
    exporters that record no intermediate shapes are cut as well.

    Two things exporters write are rebuilt from the tap: a tensor the tap is a transposition of
    (the TorchScript exporter hands the next RNN the time-major tensor and the rest a batch-first
    copy), and the batch size read off the model input (an RNN's zero initial state)."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    producers = {output: node for node in proto.graph.node for output in node.output if output}
    initialisers = {init.name: init for init in proto.graph.initializer}
    logits_node = producers.get(logits)
    head: nn.Linear | None = None
    end = logits
    if logits_node is not None and logits_node.op_type == "Gemm":
        weights = initialisers.get(logits_node.input[1])
        transposed = next((a.i for a in logits_node.attribute if a.name == "transB"), 0)
        if weights is not None and len(logits_node.input) > 2 and logits_node.input[2] in initialisers:
            w = numpy_helper.to_array(weights)
            w = (w if transposed else w.T).copy()
            head = nn.Linear(w.shape[1], w.shape[0])
            with torch.no_grad():
                head.weight.copy_(torch.from_numpy(np.ascontiguousarray(w)))
                head.bias.copy_(torch.from_numpy(numpy_helper.to_array(initialisers[logits_node.input[2]]).copy()))
            end = logits_node.input[0]
    if tensor == logits:
        raise Unavailable(f"layer {layer} is the model's output; there is no sub-network after it")
    if tensor == end:
        return Downstream(body=nn.Identity(), head=head, description=f"only the target's emotion head follows {layer}")
    inputs = {i.name for i in proto.graph.input} - set(initialisers)  # old exporters list weights as inputs
    rebuilt = _rebuilt_from_tap(producers, tensor)
    needed: list[onnx.NodeProto] = []
    used_initialisers: set[str] = set()
    seen: set[str] = {tensor}
    pending = [end]
    while pending:
        name = pending.pop()
        if name in seen or not name:
            continue
        seen.add(name)
        if name in initialisers:
            used_initialisers.add(name)
            continue
        if name in rebuilt:
            needed.append(rebuilt[name])
            pending.extend(rebuilt[name].input)
            continue
        node = producers.get(name)
        if node is not None and node.op_type == "Shape" and node.input[0] in inputs and _batch_only(node):
            # The batch size read off the model input: the tap has the same batch.
            needed.append(helper.make_node("Shape", [tensor], [name], start=batch_axis, end=batch_axis + 1))
            continue
        if name in inputs:
            raise Unavailable(f"the part after {layer} also reads the model input {name} (a skip connection or second input)")
        node = producers.get(name)
        if node is None:
            raise Unavailable(f"tensor {name} after {layer} has no producer in the graph")
        if node not in needed:
            needed.append(node)
            pending.extend(node.input)
    needed = _topological(needed)
    graph = helper.make_graph(
        needed, "downstream",
        [helper.make_tensor_value_info(tensor, onnx.TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info(end, onnx.TensorProto.FLOAT, None)],
        [initialisers[name] for name in sorted(used_initialisers)],
    )
    part = helper.make_model(graph, opset_imports=proto.opset_import, ir_version=proto.ir_version)
    from ser_audit.models.onnx_converters import convert_onnx_graph

    failures = []
    for _, body in convert_onnx_graph(part):
        if isinstance(body, str):
            failures.append(body)
            continue
        return Downstream(body=body, head=head, description=f"target's own layers after {layer} (ONNX sub-graph, onnx2torch)")
    raise Unavailable(f"onnx2torch cannot convert the part after {layer}: {'; '.join(failures)}")


def _rebuilt_from_tap(producers: dict, tensor: str) -> dict:
    """Tensors the tap was made from by transposition, each as a node that undoes it."""
    from onnx import helper

    rebuilt = {}
    current = tensor
    while (node := producers.get(current)) is not None and node.op_type == "Transpose":
        perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), None)
        if perm is None:
            break
        inverse = [perm.index(axis) for axis in range(len(perm))]
        rebuilt[node.input[0]] = helper.make_node("Transpose", [current], [node.input[0]], perm=inverse)
        current = node.input[0]
    return rebuilt


def _batch_only(node) -> bool:  # type: ignore[no-untyped-def]
    attributes = {a.name: a.i for a in node.attribute}
    return attributes.get("start", 0) == 0 and attributes.get("end", None) == 1


def _topological(nodes: list) -> list:
    """Nodes in an order where every tensor is produced before it is read."""
    produced_by = {output: node for node in nodes for output in node.output}
    ordered, done = [], set()

    def visit(node) -> None:  # type: ignore[no-untyped-def]
        if id(node) in done:
            return
        done.add(id(node))
        for name in node.input:
            if name in produced_by:
                visit(produced_by[name])
        ordered.append(node)

    for node in nodes:
        visit(node)
    return ordered


def _described(node: fx.Node) -> str:
    """An fx node as a user knows it: a module by its path, an input by its name, anything else as an
    intermediate value of the forward (fx's own names, ``getitem_3``, mean nothing outside fx)."""
    if node.op == "call_module":
        return f"the output of {node.target}"
    if node.op == "placeholder":
        return f"the model input {node.target}"
    return f"an intermediate value of the forward ({node.name})"

