"""One interface over every model format: list layers, run once, get logits and tapped layers."""

from __future__ import annotations

import fnmatch
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ser_audit.errors import LayerSelectionError
from ser_audit.frontend.spec import FrontEndSpec
from ser_audit.hashing import file_sha256


@dataclass(frozen=True)
class LayerInfo:
    """A tappable intermediate tensor.

    Attributes:
        index: Position in execution order (0 = closest to the input).
        name: Stable name, the module path where the format records one (``block2.conv``).
        kind: Operator or module class (``Conv``, ``Conv2d``, ``ReLU``...).
        shape: Output shape for one utterance of the spec's length; axis 0 is the batch.
    """

    index: int
    name: str
    kind: str
    shape: tuple[int, ...]


@dataclass
class ForwardResult:
    logits: np.ndarray
    layers: dict[str, np.ndarray] = field(default_factory=dict)


class TargetModel(ABC):
    """A model under audit.

    Subclasses set ``path``, ``format`` and ``frontend`` and implement ``_layer_kinds``
    and ``forward``. Inputs are the front-end's outputs keyed by the model's input names.
    """

    path: Path | None
    format: str
    frontend: FrontEndSpec
    training: dict[str, Any] | None = None  # how a reference model was trained, for the report
    _layers: list[LayerInfo] | None = None

    @abstractmethod
    def _layer_kinds(self) -> list[tuple[str, str]]:
        """(name, kind) of every tappable layer, in execution order."""

    @abstractmethod
    def forward(self, inputs: Mapping[str, np.ndarray], taps: Sequence[str] = ()) -> ForwardResult:
        """One pass: the logits and each tapped layer's activations (float32 numpy)."""

    @property
    def input_names(self) -> list[str]:
        return [self.frontend.input_name, *(extra.name for extra in self.frontend.extra_inputs)]

    def example_inputs(self, batch: int = 1) -> dict[str, np.ndarray]:
        """Front-end output for silence of the spec's length (1 s when variable): used to read shapes."""
        import torch

        from ser_audit.frontend.features import FrontEnd

        samples = self.frontend.num_samples or self.frontend.sample_rate
        waveform = torch.zeros(batch, samples)
        with torch.no_grad():
            features = FrontEnd(self.frontend)(waveform).numpy()
        return {name: features for name in self.input_names}

    def layers(self) -> list[LayerInfo]:
        if self._layers is None:
            kinds = self._layer_kinds()
            result = self.forward(self.example_inputs(), [name for name, _ in kinds])
            self._layers = [
                LayerInfo(index=i, name=name, kind=kind, shape=tuple(result.layers[name].shape))
                for i, (name, kind) in enumerate(kinds)
            ]
        return self._layers

    def select_layers(self, spec: str | None) -> list[LayerInfo]:
        """Layers matching a comma-separated list of names, globs, indices, ranges (``2-5``) or ``all``.

        ``None`` selects the default: every layer whose output keeps a spatial or time axis plus the
        last hidden layer, i.e. what a split-computing deployment would transmit.
        """
        layers = self.layers()
        if spec is None:
            return default_layers(layers)
        chosen: dict[int, LayerInfo] = {}
        for token in (t.strip() for t in spec.split(",") if t.strip()):
            if token == "all":
                matched = list(layers)
            elif token.lstrip("-").isdigit():
                index = int(token)
                matched = [layers[index]] if -len(layers) <= index < len(layers) else []
            elif "-" in token and all(p.isdigit() for p in token.split("-", 1)):
                low, high = (int(p) for p in token.split("-", 1))
                matched = [layer for layer in layers if low <= layer.index <= high]
            else:
                matched = [layer for layer in layers if fnmatch.fnmatchcase(layer.name, token)]
            if not matched:
                names = ", ".join(layer.name for layer in layers[:12])
                raise LayerSelectionError(
                    f"--layers {token!r} matches no layer of {self.path or 'the model'}; "
                    f"run `ser-audit layers MODEL` to list them (first: {names})"
                )
            chosen.update({layer.index: layer for layer in matched})
        return [chosen[i] for i in sorted(chosen)]

    @property
    def sha256(self) -> str:
        if self.path is None:
            raise ValueError("model has no file")
        return file_sha256(self.path)


def default_layers(layers: Sequence[LayerInfo]) -> list[LayerInfo]:
    """Pooling outputs (P0 taps the first pooling layer) plus the last hidden layer before the logits."""
    pooled = [layer for layer in layers if "pool" in layer.kind.lower() and len(layer.shape) > 2]
    hidden = [layer for layer in layers[:-1] if len(layer.shape) == 2]
    chosen = {layer.index: layer for layer in pooled}
    if hidden:
        chosen[hidden[-1].index] = hidden[-1]
    if not chosen:
        chosen = {layer.index: layer for layer in layers[:-1]}
    return [chosen[i] for i in sorted(chosen)]
