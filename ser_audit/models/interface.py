"""One interface over every model format: list layers, run once, get logits and tapped layers."""

from __future__ import annotations

import fnmatch
import hashlib
from abc import ABC, abstractmethod
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence

import numpy as np

from ser_audit.errors import LayerSelectionError, ModelError
from ser_audit.frontend.spec import FrontEndSpec
from ser_audit.hashing import file_sha256
from ser_audit.models.frames import FrameBatching, frames_per_utterance, refusal, regroup, row_order

if TYPE_CHECKING:
    from torch import nn

    from ser_audit.models.inputs import DeclaredInput
    from ser_audit.models.subnetwork import Downstream


@dataclass(frozen=True)
class LayerInfo:
    """A tappable intermediate tensor.

    Attributes:
        index: Position in execution order (0 = closest to the input).
        name: Stable name, the module path where the format records one (``block2.conv``).
        kind: The operator or module class that defines the layer (``Conv``, ``Conv2d``, ``LSTM``...).
        shape: Output shape for one utterance of the spec's length; axis 0 is the batch.
        time_axis: The axis that grows with the input's duration, read by running the model at two
            lengths (``None``: the layer has none, e.g. after global pooling).
        block: A module whose output is its own operation on its children's (a residual block),
            not one of its children's outputs.
        note: How the tapped tensor was taken where that is not obvious (an RNN's ``(output, state)``).
        readers: How many later layers read the output (0 where the format does not say). A vector
            read by several is a conditioning input, e.g. P4's speaker embedding projected into every block.
        frames: For a frame-batched layer (its leading axis is utterances x frames, ``models.frames``), the
            frames per utterance at the listed length; it is returned regrouped, ``[batch, frames, ...]``,
            with the frames as its time axis (1).
        refused: Why the layer cannot be tapped (a leading axis that cannot be regrouped per utterance);
            naming it in ``--layers`` raises this, and patterns and default taps pass over it.
    """

    index: int
    name: str
    kind: str
    shape: tuple[int, ...]
    time_axis: int | None = None
    block: bool = False
    note: str | None = None
    readers: int = 0
    frames: int | None = None
    refused: str | None = None


@dataclass(frozen=True)
class LayerEntry:
    """What a format knows of a layer before running it."""

    name: str
    kind: str
    block: bool = False
    note: str | None = None
    readers: int = 0


@dataclass(frozen=True)
class Placement:
    """Where a model's forward passes run after ``TargetModel.place``.

    Attributes:
        device: ``cpu``, ``cuda`` or ``cuda:N``: where they run, which may differ from the device asked for.
        note: Why they run elsewhere than asked (one line, for the report), else None.
    """

    device: str
    note: str | None = None


@dataclass
class ForwardResult:
    logits: np.ndarray
    layers: dict[str, np.ndarray] = field(default_factory=dict)


_RECURRENT_KINDS = ("lstm", "gru", "rnn")


def is_recurrent(kind: str) -> bool:
    return any(name in kind.lower() for name in _RECURRENT_KINDS)


# A variable-length model must also run at a length other than the 1 s its layers were listed at; a converted
# graph that baked in its example's length fails here, at load, not mid-run.
ANOTHER_LENGTH_S = 1.37


class TargetModel(ABC):
    """A model under audit.

    Subclasses set ``path``, ``format`` and ``frontend`` and implement ``_layer_entries``,
    ``_run``, ``downstream`` and ``differentiable``. Inputs are the front-end's outputs keyed
    by the model's input names. Every tapped tensor is returned batch-first, whatever the
    layer's own layout (a time-major RNN's output is transposed).
    """

    path: Path | None
    format: str
    frontend: FrontEndSpec
    training: dict[str, Any] | None = None  # how a reference model was trained, for the report
    loading: dict[str, str] | None = None  # how the file was read, where it shapes the figures (transformers)
    _layers: list[LayerInfo] | None = None
    _batch_axes: dict[str, int] | None = None
    _frame_batching: dict[str, FrameBatching] | None = None
    _refused: dict[str, str] | None = None
    device: str = "cpu"  # where forward passes run (``place``); inputs and outputs are numpy wherever that is
    # The user's own code the file runs through (``python:`` factories): cached activations must not outlive an edit.
    code_sha256: str | None = None

    def place(self, device: str) -> Placement:
        """Run later forward passes on ``device`` (``cpu``, ``cuda``, ``cuda:N``, already resolved) where the
        format can, and say where they will run. The default stays on the CPU and says so."""
        if device == "cpu":
            return Placement("cpu")
        return Placement("cpu", f"{self.format} models run on the CPU in this version of ser-audit, not on {device}")

    @contextmanager
    def placed(self, device: str) -> Iterator[Placement]:
        """``place(device)`` for the ``with`` block, then back where the model was."""
        previous = self.device
        placement = self.place(device)
        try:
            yield placement
        finally:
            self.place(previous)

    @abstractmethod
    def _layer_entries(self) -> list[LayerEntry]:
        """Every tappable layer, in execution order."""

    @abstractmethod
    def _run(self, inputs: Mapping[str, np.ndarray], taps: Sequence[str]) -> ForwardResult:
        """One pass: the logits and each tapped layer's activations, in the layer's own layout."""

    @abstractmethod
    def _downstream(self, layer: str) -> "Downstream":
        """The sub-network after ``layer``, reading the layer's output in its own layout."""

    def downstream(self, layer: str) -> "Downstream":
        """The target's own sub-network from ``layer`` (batch first, as tapped) to its emotion head,
        for P0's same-architecture attacker; raises ``Unavailable`` with the reason when it cannot be cut."""
        from ser_audit.models.subnetwork import from_batch_first

        self.layers()
        part = self._downstream(layer)
        batching = (self._frame_batching or {}).get(layer)
        if batching is not None:
            from dataclasses import replace

            from ser_audit.models.frames import Ungrouped

            return replace(part, body=Ungrouped(part.body, batching))
        return from_batch_first(part, (self._batch_axes or {}).get(layer, 0))

    @abstractmethod
    def differentiable(self) -> "nn.Module":
        """A torch module computing the logits from the inputs (in ``input_names`` order), for
        gradients and fine-tuning; raises ModelError when the format has none."""

    def forward(self, inputs: Mapping[str, np.ndarray], taps: Sequence[str] = ()) -> ForwardResult:
        """One pass: the logits and each tapped layer's activations (float32 numpy, batch first).

        ``inputs`` holds the primary input and any reference input; auxiliary inputs (zeros, constant,
        length, mask) are made here from the primary batch."""
        if taps and self._batch_axes is None:
            self.layers()  # reads each layer's batch axis
        refused = [reason for name, reason in (self._refused or {}).items() if name in taps]
        if refused:
            raise LayerSelectionError(refused[0])
        result = self._run(self.complete_inputs(inputs), taps)
        batch = np.shape(inputs[self.frontend.input_name])[0]
        for name in taps:
            result.layers[name] = self._batch_first(name, result.layers[name], batch)
        return result

    def _batch_first(self, name: str, activation: np.ndarray, batch: int) -> np.ndarray:
        """A tapped activation in the layer's own layout, batch first (a frame-batched layer regrouped)."""
        batching = (self._frame_batching or {}).get(name)
        if batching is not None:
            return regroup(name, activation, batch, batching)
        axis = (self._batch_axes or {}).get(name, 0)
        return np.moveaxis(activation, axis, 0) if axis else activation

    @property
    def input_names(self) -> list[str]:
        """Every input the model takes, in model order."""
        return [self.frontend.input_name, *(extra.name for extra in self.frontend.extra_inputs)]

    @property
    def fed_names(self) -> list[str]:
        """The inputs callers feed from the corpus: the primary one, then any neutral reference."""
        return [self.frontend.input_name, *(extra.name for extra in self.frontend.reference_inputs)]

    def declared_inputs(self) -> dict[str, "DeclaredInput"]:
        """What the format declares of each input's shape and type (none by default: eager torch)."""
        return {}

    def complete_inputs(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``inputs`` with the spec's auxiliary inputs made for its primary batch (``models.inputs``)."""
        from ser_audit.models.inputs import complete_inputs

        return complete_inputs(self.frontend, inputs, self.declared_inputs(), origin=f"model {self.path or 'in memory'}")

    def example_inputs(self, batch: int = 1, seconds: float | None = None) -> dict[str, np.ndarray]:
        """Front-end output for silence of the spec's length (1 s when variable, or ``seconds``), every input
        completed: used to read shapes."""
        import torch

        from ser_audit.frontend.features import FrontEnd

        samples = int(seconds * self.frontend.sample_rate) if seconds else (
            self.frontend.num_samples or self.frontend.sample_rate)
        waveform = torch.zeros(batch, samples)
        with torch.no_grad():
            features = FrontEnd(self.frontend)(waveform).numpy()
        return self.complete_inputs({name: features for name in self.fed_names})

    def _check_logits(self, logits: np.ndarray) -> None:
        """One logit per emotion the spec names: with more, predictions past the list index no emotion and every
        UAR reads 0; with fewer, some emotions can never be predicted.

        Raises:
            ModelError: naming both counts and the spec field to fix.
        """
        emotions = list(self.frontend.emotions)
        found = np.asarray(logits)
        if found.ndim != 2 or not np.issubdtype(found.dtype, np.floating):
            raise ModelError(
                f"{f'model {self.path}' if self.path else 'the model'}'s first output is {found.dtype} "
                f"[{', '.join(map(str, found.shape))}] for "
                "2 utterances; ser-audit reads float logits shaped [batch, classes] there: return (or export) them "
                "first, before labels, hidden states or per-frame scores")
        width = found.shape[-1]  # [rows, classes]
        if emotions and width != len(emotions):
            raise ModelError(
                f"model {self.path or 'given'} outputs {width} logits, but its front-end spec names {len(emotions)} "
                f"emotions ({', '.join(emotions)}); list one emotion per output, in the model's order, in the spec's "
                "emotions (--frontend, the sidecar MODEL.frontend.json, or the checkpoint's id2label)")

    def layers(self) -> list[LayerInfo]:
        if self._layers is None:
            entries = self._layer_entries()
            names = [entry.name for entry in entries]
            # Shapes read by running the model: the axis that follows the batch size (2, then 3)
            # is the batch axis; the one that follows the number of frames is time.
            first = self._run(self.example_inputs(batch=2), names)
            self._check_logits(first.logits)
            base = first.layers
            wider = self._run(self.example_inputs(batch=3), names).layers
            self._batch_axes, self._frame_batching, self._refused = {}, {}, {}
            frames: dict[str, int] = {}
            for name in names:
                two, three = base[name].shape, wider[name].shape
                axis = _batch_axis(two, three)
                # No axis follows the batch: a leading axis that grows with it in proportion is
                # utterances x frames (a frame-batched network); one that grows otherwise is refused.
                if axis is None and frames_per_utterance(two, three):
                    frames[name] = two[0] // 2
                elif axis is None and two and three and two[0] != three[0]:
                    self._refused[name] = refusal(name, f"its leading axis grows with the batch, {two[0]} rows at 2 "
                                                        f"utterances and {three[0]} at 3, but not in proportion")
                self._batch_axes[name] = axis or 0
            self._read_row_orders(frames, base)
            batch_first = {name: self._batch_first(name, base[name], 2) for name in names}
            time_axes = self._time_axes(names, batch_first)
            self._layers = [
                LayerInfo(index=i, name=entry.name, kind=entry.kind, shape=(1, *batch_first[entry.name].shape[1:]),
                          time_axis=1 if entry.name in self._frame_batching else time_axes[entry.name],
                          block=entry.block, note=entry.note, readers=entry.readers,
                          frames=frames.get(entry.name) if entry.name in self._frame_batching else None,
                          refused=self._refused.get(entry.name))
                for i, entry in enumerate(entries)
            ]
        return self._layers

    def _read_row_orders(self, frames: dict[str, int], base: dict[str, np.ndarray]) -> None:
        """For layers whose leading axis is utterances x frames, whether the rows run utterance by utterance
        or frame by frame: the rows that change when only the second of two utterances does."""
        if not frames:
            return
        import torch

        primary = self.frontend.input_name
        example = {name: x for name, x in self.example_inputs(batch=2).items() if name in self.fed_names}
        changed = {name: x.copy() for name, x in example.items()}
        changed[primary][1] += np.random.default_rng(0).standard_normal(changed[primary][1].shape).astype(
            changed[primary].dtype)
        # Seeded alike, so that a layer drawing noise compares like with like.
        runs = []
        for inputs in (example, changed):
            with torch.random.fork_rng():
                torch.manual_seed(0)
                runs.append(self._run(self.complete_inputs(inputs), list(frames)).layers)
        assert self._frame_batching is not None and self._refused is not None
        orders = {name: row_order(runs[0][name], runs[1][name], count) for name, count in frames.items()}
        # A layer that does not respond to the input (noise, a dead activation) cannot show its order:
        # it takes the one its network's other frame layers agree on.
        agreed = {order for name, order in orders.items() if order is not None}
        for name, count in frames.items():
            unchanged = np.array_equal(runs[0][name], runs[1][name])
            order = orders[name] or (next(iter(agreed)) if unchanged and len(agreed) == 1 else None)
            if order is None:
                self._refused[name] = refusal(name, f"its leading axis is {2 * count} rows at 2 utterances, but the "
                                                    "rows of one utterance are neither consecutive nor interleaved")
            else:
                self._frame_batching[name] = FrameBatching(count, order)

    def _time_axes(self, names: list[str], base: dict[str, np.ndarray]) -> dict[str, int | None]:
        """Each layer's time axis: the axis that grows when the input has 1.5 times the frames; for a
        graph that takes one length only, the axis along which a change to the last frames stays late."""
        if "time" not in self.frontend.layout:
            return dict.fromkeys(names)
        axis = list(self.frontend.layout).index("time")
        example = {name: x for name, x in self.example_inputs(batch=2).items() if name in self.fed_names}
        frames = example[self.frontend.input_name].shape[axis]
        longer = {name: np.concatenate([x, np.take(x, range(frames // 2), axis=axis)], axis=axis)
                  for name, x in example.items()}
        try:
            stretched = self._run(self.complete_inputs(longer), names).layers
        except Exception:  # a graph with a fixed input length
            stretched = None
        if stretched is not None:
            return {name: self._grown_axis(name, base[name].shape, stretched[name]) for name in names}
        noise = np.random.default_rng(0).standard_normal
        changed = {name: x.copy() for name, x in example.items()}
        for x in changed.values():
            late = [slice(None)] * x.ndim
            late[axis] = slice(frames - max(1, frames // 4), frames)
            x[tuple(late)] += noise(x[tuple(late)].shape).astype(x.dtype)
        perturbed = self._run(self.complete_inputs(changed), names).layers
        found: dict[str, int | None] = {}
        lengths = {frames}  # time-axis lengths seen so far, in execution order
        for name in names:
            late_axis = _late_axis(base[name], self._batch_first(name, perturbed[name], 2), lengths,
                                   self.frontend.layout)
            found[name] = late_axis
            if late_axis is not None:
                lengths.add(base[name].shape[late_axis])
        return found

    def _grown_axis(self, name: str, shape: tuple[int, ...], stretched: np.ndarray) -> int | None:
        try:
            return _grown_axis(shape, self._batch_first(name, stretched, 2).shape)
        except LayerSelectionError:  # a frame-batched layer whose rows at another length do not regroup
            assert self._frame_batching is not None and self._refused is not None
            del self._frame_batching[name]
            self._refused[name] = refusal(name, f"at 1.5 times the length its leading axis has {stretched.shape[0]} "
                                                "rows, which 2 utterances do not share evenly")
            return None

    def default_taps(self) -> list[LayerInfo]:
        """What a split-computing deployment would transmit, and where the depth curve needs points. For a
        transformer, every encoder block and the projector; otherwise pooling outputs that keep a map (P0
        taps the first pooling layer), block outputs (ResNets), every recurrent layer, a vector that
        several layers read (a conditioning embedding such as P4's speaker embedding), and the last
        hidden layer before the logits."""
        from ser_audit.models.blocks import encoder_blocks, transformer_blocks

        layers = [layer for layer in self.layers() if layer.refused is None]
        blocks = transformer_blocks([layer.name for layer in layers])
        if blocks:  # a transformer: every encoder block, and the projected output the head pools
            wanted = {*encoder_blocks(blocks), "projector", *self.frontend.audit_taps}
            return [layer for layer in layers if layer.name in wanted]
        chosen = {layer.index: layer for layer in layers
                  if _default_tap(layer) or layer.name in self.frontend.audit_taps}
        hidden = [layer for layer in layers[:-1] if len(layer.shape) == 2] or layers[-2:-1]
        if hidden:
            chosen[hidden[-1].index] = hidden[-1]
        if not chosen:
            chosen = {layer.index: layer for layer in layers[:-1]}
        if not chosen:
            refused = [layer.refused for layer in self.layers() if layer.refused]
            if refused:
                raise LayerSelectionError(refused[0])
        return [chosen[i] for i in sorted(chosen)]

    def operators(self) -> set[str]:
        """The operator kinds inside the model (not those that produce its outputs), for telling families
        apart where the layers alone cannot: attention exported to ONNX is MatMul and Softmax, not a block."""
        return {layer.kind for layer in self.layers()[:-1]}

    def listed_layers(self, everything: bool = False) -> list[LayerInfo]:
        """What ``ser-audit layers`` shows: every layer, or for a transformer (named as transformers names
        its parts, in any format) its blocks unless ``everything``."""
        from ser_audit.models.blocks import transformer_blocks

        layers = self.layers()
        blocks = set(transformer_blocks([layer.name for layer in layers]))
        return layers if everything or not blocks else [layer for layer in layers if layer.name in blocks]

    def select_layers(self, spec: str | None, *, flag: str = "--layers") -> list[LayerInfo]:
        """Layers matching a comma-separated list of names, globs, indices, ranges (``2-5``) or ``all``;
        ``None`` selects ``default_taps()``. A token that is a layer's name is that layer, even when
        it reads as an index or range too (an ``nn.Sequential``'s children are named ``0``, ``1``...)."""
        layers = self.layers()
        if spec is None:
            return self.default_taps()
        by_name = {layer.name: layer for layer in layers}
        chosen: dict[int, LayerInfo] = {}
        for token in (t.strip() for t in spec.split(",") if t.strip()):
            if token in by_name:
                matched = [by_name[token]]
            elif token == "all":
                matched = list(layers)
            elif token.lstrip("-").isdigit():
                index = int(token)
                matched = [layers[index]] if -len(layers) <= index < len(layers) else []
            elif "-" in token and all(p.isdigit() for p in token.split("-", 1)):
                low, high = (int(p) for p in token.split("-", 1))
                matched = [layer for layer in layers if low <= layer.index <= high]
            else:
                matched = [layer for layer in layers if fnmatch.fnmatchcase(layer.name, token)]
            if len(matched) == 1 and matched[0].refused and (token in by_name or token.lstrip("-").isdigit()):
                raise LayerSelectionError(matched[0].refused)
            matched = [layer for layer in matched if layer.refused is None]  # patterns pass over refused layers
            if not matched:
                names = ", ".join(layer.name for layer in layers[:12])
                raise LayerSelectionError(
                    f"{flag} {token!r} matches no layer of {self.path or 'the model'}; "
                    f"run `ser-audit layers MODEL` to list them (first: {names})"
                )
            chosen.update({layer.index: layer for layer in matched})
        return [chosen[i] for i in sorted(chosen)]

    @property
    def sha256(self) -> str:
        if self.path is None:
            raise ValueError("model has no file")
        return file_sha256(self.path)

    @property
    def cache_identity(self) -> str:
        """What cached activations are keyed by: the file, and the code that runs it where that is the user's."""
        if self.code_sha256 is None:
            return self.sha256
        return hashlib.sha256(f"{self.sha256}:{self.code_sha256}".encode()).hexdigest()


def _default_tap(layer: LayerInfo) -> bool:
    if is_recurrent(layer.kind) or layer.block:
        return True
    if len(layer.shape) == 2 and layer.readers > 1:
        return True
    return "pool" in layer.kind.lower() and len(layer.shape) > 2


def _batch_axis(shape: tuple[int, ...], wider: tuple[int, ...]) -> int | None:
    """The axis that is 2 long at two utterances and 3 at three; None where none is."""
    return next((a for a, (x, y) in enumerate(zip(shape, wider)) if (x, y) == (2, 3)), None)


def _grown_axis(shape: tuple[int, ...], stretched: tuple[int, ...]) -> int | None:
    """The one axis longer at 1.5 times the frames (batch first); none for vectors, where a grown axis
    is a flattened map, not time."""
    if len(shape) <= 2 or len(stretched) != len(shape):
        return None
    grown = [axis for axis in range(1, len(shape)) if stretched[axis] > shape[axis]]
    return grown[0] if len(grown) == 1 else None


def _late_axis(base: np.ndarray, perturbed: np.ndarray, lengths: set[int], layout: Sequence[str]) -> int | None:
    """The axis along which a change to the input's last frames shows only at the end (causal and
    local layers). Where no axis shows it (attention, bidirectional RNNs), the one axis as long as
    a time axis before it; failing that, the input layout's guess."""
    if base.ndim <= 2:
        return None
    difference = np.abs(perturbed.astype(np.float64) - base.astype(np.float64))
    total = difference.sum()
    if total > 0:
        for axis in range(1, base.ndim):
            profile = difference.sum(axis=tuple(a for a in range(base.ndim) if a != axis))
            if len(profile) >= 4 and profile[: len(profile) // 2].sum() <= 0.01 * total:
                return axis
    matching = [axis for axis in range(1, base.ndim) if base.shape[axis] in lengths and base.shape[axis] >= 2]
    if len(matching) == 1:
        return matching[0]
    guess = _layout_time_axis(base.ndim, layout)
    return guess if guess is not None and guess < base.ndim and base.shape[guess] >= 2 else None


def _layout_time_axis(rank: int, layout: Sequence[str]) -> int | None:
    """For graphs that take one input length only: assume the layers keep the input's axis order."""
    if rank <= 2:
        return None
    if rank == len(layout):
        return list(layout).index("time")
    without_channel = [axis for axis in layout if axis != "channel"]
    return without_channel.index("time") if "time" in without_channel else rank - 1
