"""Frame-batched layers: regrouping utterances × frames per utterance.

A network that runs on fixed-size frames with the frames of every utterance as one batch (a
CREPE-like pitch network under an emotion head) has layers whose leading axis is utterances ×
frames. Listing the layers finds them: the leading axis grows in proportion to the batch (2F rows
at 2 utterances, 3F at 3) and with the input's length (F frames per utterance). Each such layer
is returned per utterance, ``[batch, frames, ...]``, its frames becoming its time axis.

The rows may run utterance by utterance (``u0f0, u0f1, ..., u1f0``: a reshape of
``[batch, frames]``) or frame by frame (``u0f0, u1f0, ..., u0f1``); which one is read from the rows
that change when only the second of two utterances does. Where neither explains it, or the rows
are not a multiple of the batch, the layer is refused rather than regrouped by guesswork.

>>> rows = np.arange(6).reshape(6, 1)  # two utterances, three frames, utterance by utterance
>>> regroup("conv", rows, 2, FrameBatching(frames=3, order="utterance"))[:, :, 0].tolist()
[[0, 1, 2], [3, 4, 5]]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn

from ser_audit.errors import LayerSelectionError

RowOrder = Literal["utterance", "frame"]


@dataclass(frozen=True)
class FrameBatching:
    """A frame-batched layer: ``frames`` per utterance at the listed length, rows in ``order``."""

    frames: int
    order: RowOrder


def frames_per_utterance(at_two: tuple[int, ...], at_three: tuple[int, ...]) -> int | None:
    """F where the leading axis is 2F at two utterances and 3F at three (F > 1), the other axes unchanged."""
    if len(at_two) != len(at_three) or not at_two or at_two[1:] != at_three[1:]:
        return None
    rows, more = at_two[0], at_three[0]
    if rows <= 2 or rows % 2 or more * 2 != rows * 3:
        return None
    return rows // 2


def row_order(base: np.ndarray, perturbed: np.ndarray, frames: int) -> RowOrder | None:
    """Which rows hold the second of two utterances, read from those that changed when only it did: rows
    F..2F-1 (utterance by utterance) or the odd rows (frame by frame); None where neither alone fits."""
    if base.shape != perturbed.shape or len(base) != 2 * frames:
        return None
    changed = np.abs(perturbed.astype(np.float64) - base.astype(np.float64)).reshape(len(base), -1).max(1) > 0
    if not changed.any():
        return None
    rows = np.arange(len(base))
    candidates: list[tuple[RowOrder, np.ndarray]] = [("utterance", rows >= frames), ("frame", rows % 2 == 1)]
    fits = [order for order, second in candidates if not changed[~second].any()]
    return fits[0] if len(fits) == 1 else None


def regroup(name: str, activation: np.ndarray, batch: int, batching: FrameBatching) -> np.ndarray:
    """``[batch * frames, ...]`` to ``[batch, frames, ...]``.

    Raises:
        LayerSelectionError: the rows are not a multiple of the batch.
    """
    rows = activation.shape[0]
    if rows % batch:
        raise LayerSelectionError(
            f"layer {name} is frame-batched (utterances x frames on its leading axis) but has {rows} rows for {batch} "
            "utterances, not a multiple: it cannot be regrouped per utterance; tap another layer (--layers)"
        )
    frames, rest = rows // batch, activation.shape[1:]
    if batching.order == "utterance":
        return activation.reshape(batch, frames, *rest)
    return np.swapaxes(activation.reshape(frames, batch, *rest), 0, 1)


def refusal(name: str, reason: str) -> str:
    """The one line a refused layer is reported with."""
    return f"layer {name} cannot be regrouped per utterance ({reason}); tap another layer (--layers)"


class Ungrouped(nn.Module):
    """``body``, which reads the layer's own rows, fed a regrouped ``[batch, frames, ...]`` activation
    (the same-architecture cut of a frame-batched layer)."""

    def __init__(self, body: nn.Module, batching: FrameBatching) -> None:
        super().__init__()
        self.body, self.order = body, batching.order

    def forward(self, activation: torch.Tensor) -> torch.Tensor:
        if self.order == "frame":
            activation = activation.transpose(0, 1)
        return self.body(activation.reshape(-1, *activation.shape[2:]))
