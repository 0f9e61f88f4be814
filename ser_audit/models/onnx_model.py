"""ONNX models: intermediate tensors promoted to graph outputs, one onnxruntime session for all taps.

Layer names follow the torch module that produced a node when the exporter recorded it
(``pkg.torch.onnx.name_scopes`` from the dynamo exporter, ``/block/conv/Conv`` node names
from the TorchScript exporter), so a model exported from torch lists the same layers as
its eager original. A module's layer is the tensor its scope hands on, and its kind is
the op that defines it (an LSTM scope is an ``LSTM``, not the ``Transpose`` that ends it).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np
import onnx

from ser_audit.errors import ModelError
from ser_audit.frontend.spec import METADATA_KEY, FrontEndSpec, parse_spec
from ser_audit.models import batch_of_one
from ser_audit.models.inputs import DeclaredInput, missing_inputs_error
from ser_audit.models.interface import ForwardResult, LayerEntry, Placement, TargetModel
from ser_audit.models.onnx_converters import logits_output

if TYPE_CHECKING:
    import onnxruntime
    from torch import nn

    from ser_audit.models.subnetwork import Downstream

# Nodes that compute no activation of their own.
_BOOKKEEPING_OPS = {"Constant", "Shape", "Gather", "Unsqueeze", "Concat", "ConstantOfShape", "Cast", "Range", "Slice",
                    "Identity"}
# The op that defines a module, in order of precedence: an LSTM scope also holds Transpose and
# Squeeze nodes, but it is an LSTM.
_DEFINING_OPS = ("LSTM", "GRU", "RNN", "Attention", "MultiHeadAttention", "Conv", "ConvTranspose", "Gemm", "MatMul",
                 "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "ReduceMean", "ReduceMax",
                 "LayerNormalization",
                 "BatchNormalization", "InstanceNormalization")
_RECURRENT_OPS = {"LSTM", "GRU", "RNN"}


def _qualified(parts: list[str]) -> list[str]:
    """``/layer2/layer2.0/shortcut/shortcut.0/Conv`` spells each scope relative to its parent, sometimes
    repeating the parent's last name: qualified paths ``layer2``, ``layer2.0``, ``layer2.0.shortcut``,
    ``layer2.0.shortcut.0``."""
    path: list[str] = []
    for part in parts:
        if not path:
            path.append(part)
            continue
        parent = path[-1]
        head, dot, rest = part.partition(".")
        if dot and head == parent.rsplit(".", 1)[-1]:
            path.append(f"{parent}.{rest}")
        else:
            path.append(f"{parent}.{part}")
    return path


def _module_path(node: onnx.NodeProto) -> list[str]:
    """The torch modules a node ran inside, outermost first; empty outside any module."""
    for prop in node.metadata_props:
        if prop.key == "pkg.torch.onnx.name_scopes":
            scopes = ast.literal_eval(prop.value)
            return [scope for scope in scopes[1:-1] if scope]  # ['', module..., op]
    if node.name.startswith("/") and node.name.count("/") >= 2:
        return _qualified(node.name.strip("/").split("/")[:-1])
    return []


@dataclass(frozen=True)
class GraphLayer:
    name: str
    kind: str
    tensor: str
    block: bool = False
    note: str | None = None


def onnx_layers(graph: onnx.GraphProto) -> list[GraphLayer]:
    """One layer per torch module the exporter recorded, in graph order.

    A module's output is the tensor computed inside its scope and read outside it (or
    returned). Leaf modules are layers; a container is a layer only where that output is its
    own operation (a residual block's sum), not a child's, as in eager torch. Operations
    outside any module (functional glue) are not layers. A graph without module scopes lists
    every operation's output instead.
    """
    initialisers = {init.name for init in graph.initializer}
    nodes = [node for node in graph.node if node.output and node.output[0] not in initialisers]
    paths = [_module_path(node) for node in nodes]
    if not any(paths):
        return [GraphLayer(node.output[0], node.op_type, node.output[0]) for node in nodes
                if node.op_type not in _BOOKKEEPING_OPS]
    members: dict[str, list[int]] = {}
    for index, path in enumerate(paths):
        for module in path:
            members.setdefault(module, []).append(index)
    consumers: dict[str, set[int]] = {}
    for index, node in enumerate(nodes):
        for name in node.input:
            consumers.setdefault(name, set()).add(index)
    returned = {output.name for output in graph.output}
    parents = {module for path in paths for module in path[:-1]}
    layers: list[tuple[int, GraphLayer]] = []
    for module, inside in members.items():
        inside_set = set(inside)
        computing = [i for i in inside if nodes[i].op_type not in _BOOKKEEPING_OPS]
        if not computing:
            continue
        escaping = [
            (i, name) for i in inside for name in nodes[i].output
            if name and (name in returned or consumers.get(name, set()) - inside_set) and nodes[i].op_type not in
            _BOOKKEEPING_OPS
        ]
        if not escaping:
            continue
        defining = next((op for op in _DEFINING_OPS for i in computing if nodes[i].op_type == op), None)
        recurrent = next((i for i in computing if nodes[i].op_type in _RECURRENT_OPS), None)
        note = None
        if recurrent is not None:
            # The sequence output (Y and what the scope makes of it), not the final state.
            sequence = _descendants(nodes, recurrent, nodes[recurrent].output[0], inside_set)
            escaping = [item for item in escaping if item[1] in sequence] or escaping
            note = "the recurrent layer's sequence output (final states dropped)"
        producer, tensor = max(escaping)
        own = paths[producer][-1] == module
        block = module in parents
        if block and not own:
            continue  # a container that passes a child's output on
        kind = defining if defining and not block else nodes[producer].op_type
        layers.append((producer, GraphLayer(module, kind, tensor, block=block, note=note)))
    # A scripted recurrent module exports without a scope while the traced modules around it keep theirs;
    # dropping it would drop the very layer (and the recurrent family) a user came to audit.
    taken = {layer.name for _, layer in layers}
    for index, node in enumerate(nodes):
        if node.op_type in _RECURRENT_OPS and not paths[index]:
            name = node.name.strip("/") or node.output[0]
            if name not in taken:
                taken.add(name)
                layers.append((index, GraphLayer(name, node.op_type, node.output[0], note=(
                    "a recurrent layer exported without its module's name (a scripted module), named by its ONNX "
                    "node; its sequence output"))))
    return [layer for _, layer in sorted(layers, key=lambda item: item[0])]


def _descendants(nodes: list[onnx.NodeProto], start: int, tensor: str, inside: set[int]) -> set[str]:
    reached = {tensor}
    for index in sorted(inside):
        if index > start and any(name in reached for name in nodes[index].input):
            reached.update(name for name in nodes[index].output if name)
    return reached


def read_frontend(proto: onnx.ModelProto, origin: str) -> FrontEndSpec | None:
    for prop in proto.metadata_props:
        if prop.key == METADATA_KEY:
            return parse_spec(prop.value, origin=f"{origin} (metadata {METADATA_KEY})")
    return None


CUDA_PROVIDER = "CUDAExecutionProvider"


class OnnxModel(TargetModel):
    """An ONNX graph run by onnxruntime: on the CPU, or through CUDA's execution provider once placed on a
    GPU where onnxruntime offers it (``onnxruntime-gpu``)."""

    format = "onnx"

    def __init__(self, proto: onnx.ModelProto, frontend: FrontEndSpec, *, path: Path | None,
                 exported_program: bool = False) -> None:
        self.path = path
        self.frontend = frontend
        self.proto = proto
        self._layers = None
        self._layer_table = with_block_aliases(onnx_layers(proto.graph))
        self._tensor_of = {layer.name: layer.tensor for layer in self._layer_table}
        self._declared = declared_inputs(proto)
        graph_inputs = list(self._declared)
        unknown = [name for name in self.input_names if name not in graph_inputs]
        if unknown:
            raise ModelError(
                f"model {path}: the front-end spec names input(s) {unknown} but the graph has {graph_inputs}; "
                "fix input_name/extra_inputs in the front-end spec"
            )
        # Refused before any work: onnxruntime would only say "Required inputs are missing" on the first run.
        unfed = {name: value for name, value in self._declared.items() if name not in self.input_names}
        if unfed:
            raise missing_inputs_error(path, unfed)
        # A torch.export program's own guards hold its batch: it is refused rather than run one at a time.
        self.batch_of_one = check_input_shapes(proto, self, path, exported_program=exported_program)
        if self.batch_of_one:
            self.loading = {"batch": batch_of_one.NOTE}
        self._logits_name = proto.graph.output[logits_output(proto)].name
        self._providers: list[str | tuple[str, dict[str, str]]] = ["CPUExecutionProvider"]
        # One session per set of taps: every extra graph output keeps onnxruntime from fusing
        # the layers it splits, so the graph as shipped runs untapped and each tap set alone.
        self._sessions = {(): self._session(proto)}
        self._converted: nn.Module | None = None

    def place(self, device: str) -> Placement:
        """CUDA's execution provider (the CPU's behind it, for operators it lacks) when ``device`` is a GPU and
        onnxruntime offers it; else the CPU, with a note saying why."""
        import onnxruntime

        placement = Placement(device)
        providers: list[str | tuple[str, dict[str, str]]] = ["CPUExecutionProvider"]
        if device.startswith("cuda"):
            if CUDA_PROVIDER in onnxruntime.get_available_providers():
                providers = [(CUDA_PROVIDER, {"device_id": device.partition(":")[2] or "0"}), "CPUExecutionProvider"]
            else:
                placement = Placement("cpu", f"onnxruntime offers no {CUDA_PROVIDER} here, so the ONNX graph ran on the "
                                             f"CPU, not {device} (pip install onnxruntime-gpu)")
        if providers != self._providers:
            self._providers = providers
            self._sessions = {(): self._session(self.proto)}
        self.device = placement.device
        return placement

    def _session(self, proto: onnx.ModelProto) -> "onnxruntime.InferenceSession":
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.log_severity_level = 4  # errors reach the caller as exceptions
        # onnxruntime threads otherwise spin after each run and starve the pooling that follows.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            return onnxruntime.InferenceSession(proto.SerializeToString(), options, providers=self._providers)
        except Exception as error:  # onnxruntime raises its own untyped exceptions
            raise ModelError(f"model {self.path} cannot be loaded by onnxruntime: {str(error).splitlines()[0]}") from None

    def operators(self) -> set[str]:
        return graph_operators(self.proto.graph)

    def _layer_entries(self) -> list[LayerEntry]:
        return [LayerEntry(layer.name, layer.kind, block=layer.block, note=layer.note) for layer in self._layer_table]

    def declared_inputs(self) -> dict[str, DeclaredInput]:
        return self._declared

    def _downstream(self, layer: str) -> Downstream:
        from ser_audit.models.subnetwork import Unavailable, cut_onnx

        if layer not in self._tensor_of:
            raise Unavailable(f"layer {layer} is not in the graph")
        batch_axis = (self._batch_axes or {}).get(layer, 0)
        info = next(info for info in self.layers() if info.name == layer)
        # The tap's shape in its own layout, batch and time left symbolic: converters that read the
        # input's rank or feature size (global pooling, layer norm) need them.
        dims: list[int | str] = [size for size in info.shape[1:]]
        if info.frames is not None and self.batch_of_one:
            raise Unavailable(f"the graph fixes its batch at 1 and {layer} holds one row per frame; re-export the model "
                              "with a dynamic batch axis to add this attacker")
        if info.frames is not None:  # frame-batched: the graph's own rows are utterances x frames
            dims = ["batch", *info.shape[2:]]
        else:
            if info.time_axis is not None:
                dims[info.time_axis - 1] = "time"
            dims.insert(batch_axis, "batch")
        part = cut_onnx(self.proto, self._tensor_of[layer], self._logits_name, layer, dims=dims, batch_axis=batch_axis)
        if not self.batch_of_one:
            return part
        if not batch_of_one.trainable(part.body):
            raise Unavailable(f"the graph fixes its batch at 1 and the sub-network after {layer} holds a batch norm, "
                              "which cannot train one utterance at a time; re-export the model with a dynamic batch "
                              "axis to add this attacker")
        return replace(part, body=batch_of_one.OneAtATime(part.body, [batch_axis]))

    def differentiable(self) -> nn.Module:
        """The whole graph through onnx2torch; it must reproduce onnxruntime's logits on example
        inputs, or it is refused (callers may then fall back to gradient-free estimates)."""
        if self._converted is None:
            from ser_audit.models.differentiable import verified_conversion

            self._converted = verified_conversion(self)
        return self._converted

    def _run(self, inputs: Mapping[str, np.ndarray], taps: Sequence[str] = ()) -> ForwardResult:
        names = [self._logits_name, *(self._tensor_of[name] for name in taps)]
        fed = set(self.fed_names)  # front-end features are float32; auxiliary inputs carry the graph's own type
        feed = {name: np.ascontiguousarray(inputs[name], dtype=np.float32 if name in fed else None)
                for name in self.input_names}
        key = tuple(sorted(set(names[1:])))
        if key not in self._sessions:
            if len(self._sessions) > 4:
                del self._sessions[next(k for k in self._sessions if k)]
            self._sessions[key] = self._session(_with_outputs(self.proto, key))
        unique = list(dict.fromkeys(names))  # a block and its last child read one tensor
        session = self._sessions[key]
        if self.batch_of_one:
            axis = self.frontend.layout.index("batch")
            outputs = batch_of_one.run_each(lambda one: session.run(unique, one), feed, {name: axis for name in feed})
        else:
            outputs = session.run(unique, feed)
        values = dict(zip(unique, outputs))
        if self.batch_of_one and np.ndim(values[self._logits_name]) < 2:
            raise ModelError(f"model {self.path}: its logits have no batch axis (shape "
                             f"{list(np.shape(values[self._logits_name]))} for {len(next(iter(feed.values())))} "
                             "utterances); export them as [batch, emotions], with a dynamic batch axis")
        return ForwardResult(
            logits=values[self._logits_name],
            layers={name: np.asarray(values[self._tensor_of[name]], dtype=np.float32) for name in taps},
        )


def with_block_aliases(layers: list[GraphLayer]) -> list[GraphLayer]:
    """A transformer's blocks whose output is a child's (a post-LN block ends in its final LayerNorm; a
    feature encoder in its last convolution) are not layers of their own in the graph; each is added
    under its block name, reading that child's tensor, so that exports list the blocks the folder does."""
    from ser_audit.models.blocks import transformer_blocks

    names = [layer.name for layer in layers]
    missing = [name for name in transformer_blocks(names) if name not in names]
    if not missing:
        return layers
    out = list(layers)
    for block in missing:
        last = max(i for i, layer in enumerate(out) if layer.name.startswith(block + "."))
        out.insert(last + 1, GraphLayer(block, out[last].kind, out[last].tensor, block=True,
                                        note=f"the output of {out[last].name}, the block's last operation"))
    return out


def graph_operators(graph: onnx.GraphProto) -> set[str]:
    """Op types of the nodes that do not write a graph output (a classifier's closing Softmax is not attention)."""
    outputs = {output.name for output in graph.output}
    return {node.op_type for node in graph.node if not outputs & set(node.output)}


class GraphBackedModel(TargetModel):
    """A format tapped through an ONNX conversion of itself (TorchScript, torch.export): layers,
    taps and cuts come from the wrapped graph, gradients from the format's own torch module."""

    graph: OnnxModel

    def _layer_entries(self) -> list[LayerEntry]:
        return self.graph._layer_entries()

    def declared_inputs(self) -> dict[str, DeclaredInput]:
        # None while the format builds its graph from example inputs (TorchScript): the spec's shapes then.
        graph = getattr(self, "graph", None)
        return graph.declared_inputs() if graph is not None else {}

    def _run(self, inputs: Mapping[str, np.ndarray], taps: Sequence[str] = ()) -> ForwardResult:
        return self.graph._run(inputs, taps)

    def place(self, device: str) -> Placement:
        """Taps run through the wrapped graph, so onnxruntime's providers decide (``OnnxModel.place``)."""
        placement = self.graph.place(device)
        self.device = placement.device
        return placement

    def operators(self) -> set[str]:
        return self.graph.operators()

    def _downstream(self, layer: str) -> Downstream:
        self.graph._batch_axes = self._batch_axes
        return self.graph._downstream(layer)


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


def _declared_shape(value: onnx.ValueInfoProto) -> list[int | str] | None:
    """An input's declared dims: numbers where fixed, names (or ``?``) where symbolic; None without a shape."""
    tensor = value.type.tensor_type
    if not tensor.HasField("shape"):
        return None
    return [dim.dim_value if dim.HasField("dim_value") else (dim.dim_param or "?") for dim in tensor.shape.dim]


def declared_inputs(proto: onnx.ModelProto) -> dict[str, DeclaredInput]:
    """The inputs a run must feed (initialisers listed as inputs have defaults), with declared shape and type."""
    defaults = {init.name for init in proto.graph.initializer}
    declared = {}
    for value in proto.graph.input:
        if value.name in defaults:
            continue
        element = value.type.tensor_type.elem_type
        dtype = None if element == onnx.TensorProto.UNDEFINED else onnx.helper.tensor_dtype_to_np_dtype(element).name
        shape = _declared_shape(value)
        declared[value.name] = DeclaredInput(None if shape is None else tuple(shape), dtype)
    return declared


def check_input_shapes(proto: onnx.ModelProto, model: TargetModel, path: Path | None, *,
                       exported_program: bool = False) -> bool:
    """The front-end spec must make inputs of the rank and fixed sizes the graph declares (every axis but
    the batch): a spec with the wrong n_mels, layout or length otherwise fails deep inside onnxruntime.

    Returns:
        Whether the graph fixes its batch at 1 (to be run one utterance at a time, ``models.batch_of_one``).

    Raises:
        ModelError: naming the input, both shapes and the spec fields that set them; or a batch fixed at more
            than 1, or at 1 where utterances cannot be cut apart (a torch.export program, auxiliary inputs).
    """
    batch_of_one = False
    declared = {value.name: _declared_shape(value) for value in proto.graph.input}
    for value in proto.graph.input:
        element = value.type.tensor_type.elem_type
        if value.name in model.fed_names and element not in (onnx.TensorProto.FLOAT, onnx.TensorProto.UNDEFINED):
            raise ModelError(
                f"model {path}: input {value.name!r} takes {onnx.TensorProto.DataType.Name(element).lower()}, but "
                "ser-audit feeds float32 features made by the front-end spec; export the model with a float input"
            )
    examples = model.example_inputs(batch=1)  # also makes the auxiliary inputs, refusing any without a shape
    layout = ", ".join(model.frontend.layout)
    auxiliary = {extra.name: extra for extra in model.frontend.auxiliary_inputs}
    for name in model.input_names:
        graph_shape, made = declared.get(name), list(examples[name].shape)
        if graph_shape is None:
            continue
        if name in auxiliary:
            fits = len(graph_shape) == len(made) and all(
                not isinstance(want, int) or want in (0, have) for want, have in zip(graph_shape, made))
            if not fits:
                raise ModelError(
                    f"model {path}: extra input {name!r} ({auxiliary[name].source}) is made with shape {made} at batch "
                    f"1 but the graph declares {graph_shape}; fix its shape or batch_axis in the front-end spec"
                )
            continue
        fits = len(graph_shape) == len(made) and all(
            not isinstance(want, int) or want in (0, have) for want, have in zip(graph_shape[1:], made[1:]))
        if not fits:
            shown = ["batch", *made[1:]]
            length = ("" if model.frontend.num_samples is not None else
                      " (the spec is variable-length; 1 s of audio shown)")
            raise ModelError(
                f"model {path}: the front-end spec makes input {name!r} of shape {shown} ({layout}){length}, but the "
                f"graph declares {graph_shape}; fix the spec (layout, n_mels, n_mfcc, n_fft, hop_length, deltas, "
                "duration_s) in --frontend FILE or MODEL.frontend.json"
            )
        one_at_a_time = graph_shape[0] == 1 and not model.frontend.auxiliary_inputs and not exported_program
        if isinstance(graph_shape[0], int) and graph_shape[0] > 0 and not one_at_a_time:
            raise ModelError(
                f"model {path}: input {name!r} has a fixed batch size of {graph_shape[0]} (the graph declares "
                f"{graph_shape}), but utterances are run in batches; re-export it with a dynamic batch axis, e.g. "
                + ("torch.export.export(..., dynamic_shapes=...) with a torch.export.Dim for it"
                   if exported_program
                   else f"torch.onnx.export(..., dynamic_axes={{{name!r}: {{0: 'batch'}}}})")
            )
        time_axis = model.frontend.layout.index("time") if "time" in model.frontend.layout else None
        frames = graph_shape[time_axis] if time_axis is not None and time_axis < len(graph_shape) else None
        if model.frontend.num_samples is None and isinstance(frames, int) and frames > 0:
            raise ModelError(
                f"model {path}: the graph fixes the time axis of input {name!r} at {frames}, but the "
                "front-end spec is variable-length; set duration_s in the spec to the length the model was exported "
                "at, or re-export it with a dynamic time axis"
            )
        batch_of_one = batch_of_one or graph_shape[0] == 1
    return batch_of_one


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
