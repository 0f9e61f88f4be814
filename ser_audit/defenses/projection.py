"""Linear removal at a layer: LEACE, least-squares concept erasure (Belrose et al., NeurIPS 2023).

Fitted on the protection's training utterances, on every frame of the layer (its features at one
time step; the whole vector where the layer has no time axis):

    r(x) = x - strength * W⁺ P W (x - mu),   W = Sigma^(-1/2),   P the projection onto W Sigma_xz

With strength 1, no linear function of a frame (so none of the frames' mean over time, which the
linear probe reads) predicts the attribute better than a constant, and the change is the
smallest that does so. A frame's square, or the spread over time, is left alone: that is what
linear removal leaves to the nonlinear attackers, and the informed re-audit shows it.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from ser_audit.defenses.interface import AttributeRemoval, Protected, ProtectionData
from ser_audit.defenses.tap import captured, frames, replace, submodule
from ser_audit.progress import NULL_OBSERVER, ProgressObserver


class ConceptEraser(nn.Module):
    """The fitted affine erasure of every frame of a ``[batch, ...]`` activation, a fixed layer."""

    def __init__(self, erasure: torch.Tensor, mean: torch.Tensor, time_axis: int | None) -> None:
        super().__init__()
        self.erasure: torch.Tensor
        self.mean: torch.Tensor
        self.register_buffer("erasure", erasure)
        self.register_buffer("mean", mean)
        self.time_axis = time_axis

    def forward(self, activation: torch.Tensor) -> torch.Tensor:
        per_frame = frames(activation, self.time_axis)
        erased = per_frame - (per_frame - self.mean) @ self.erasure.T
        if self.time_axis is None or self.time_axis >= activation.ndim:
            return erased.reshape(activation.shape)
        moved = activation.movedim(self.time_axis, 1)
        return erased.reshape(moved.shape).movedim(1, self.time_axis)


class ErasedLayer(nn.Module):
    """A layer followed by its eraser, under the layer's name: a tap of that name reads the erased output.

    The children's ``forward`` is called directly, so that no hook sees them: the model's layers
    stay the unprotected model's, each under its own name, with this one in its place.
    """

    def __init__(self, layer: nn.Module, eraser: ConceptEraser) -> None:
        super().__init__()
        self.layer, self.eraser = layer, eraser

    def forward(self, *inputs: object, **named: object) -> object:
        output = self.layer.forward(*inputs, **named)
        if isinstance(output, tuple):
            return (self.eraser.forward(output[0]), *output[1:])
        return self.eraser.forward(output)


def leace(frames_and_labels: list[tuple[np.ndarray, np.ndarray]], n_classes: int, tolerance: float = 1e-8
          ) -> tuple[np.ndarray, np.ndarray]:
    """The erasure matrix ``W⁺ P W`` and the mean, from ``(frames [n, d], class index [n])`` blocks (streamed)."""
    total: dict[str, np.ndarray] | None = None
    count = 0
    for features, labels in frames_and_labels:
        x = features.astype(np.float64)
        z = np.eye(n_classes)[labels]
        if total is None:
            total = {"x": np.zeros(x.shape[1]), "z": np.zeros(n_classes), "xx": np.zeros((x.shape[1],) * 2),
                     "xz": np.zeros((x.shape[1], n_classes))}
        total["x"] += x.sum(0)
        total["z"] += z.sum(0)
        total["xx"] += x.T @ x
        total["xz"] += x.T @ z
        count += len(x)
    assert total is not None and count
    mean, prior = total["x"] / count, total["z"] / count
    covariance = total["xx"] / count - np.outer(mean, mean)
    cross = total["xz"] / count - np.outer(mean, prior)
    values, vectors = np.linalg.eigh((covariance + covariance.T) / 2)
    kept = values > tolerance * max(values.max(), tolerance)
    root = vectors[:, kept] * np.sqrt(values[kept])
    whitening = (vectors[:, kept] / np.sqrt(values[kept])) @ vectors[:, kept].T
    colouring = root @ vectors[:, kept].T
    u, singular, _ = np.linalg.svd(whitening @ cross, full_matrices=False)
    basis = u[:, singular > tolerance * max(singular.max(initial=0.0), tolerance)]
    return colouring @ basis @ basis.T @ whitening, mean


class ProjectionDefense(AttributeRemoval):
    """LEACE at the layer, inserted as a fixed layer; strength scales the erasure (1 = complete)."""

    name = "projection"
    default_strengths = (0.5, 0.8, 1.0)
    inserts_layer = True

    def protect(self, module: nn.Module, layer: str, data: ProtectionData, strength: float, *, quick: bool = False,
                seed: int = 0, device: str = "cpu", observer: ProgressObserver = NULL_OBSERVER) -> Protected:
        module.eval()
        blocks = []
        with torch.no_grad(), captured(module, layer) as outputs, observer.task(
                f"fitting the linear eraser at {layer}", total=len(data)) as task:
            for rows in torch.arange(len(data)).split(64):
                outputs.clear()
                module(*data.inputs(rows))
                per_frame = frames(outputs[-1], data.time_axis)
                labels = data.attribute[rows].repeat_interleave(per_frame.shape[1]).numpy()
                blocks.append((per_frame.reshape(-1, per_frame.shape[-1]).numpy(), labels))
                task.advance(len(rows))
        erasure, mean = leace(blocks, len(data.attribute_classes))
        eraser = ConceptEraser(torch.from_numpy(strength * erasure).float(), torch.from_numpy(mean).float(),
                               data.time_axis)
        protected = copy.deepcopy(module)
        replace(protected, layer, ErasedLayer(copy.deepcopy(submodule(module, layer)), eraser))
        rank = int(np.linalg.matrix_rank(erasure)) if erasure.size else 0
        return Protected(protected.eval(), strength, f"LEACE at {layer}, strength {strength:g} (erases a rank-{rank} "
                                                     f"subspace of {erasure.shape[0]} features per frame)")
