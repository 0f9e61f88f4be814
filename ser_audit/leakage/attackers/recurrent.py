"""Recurrent attackers over the tap's time axis: P0's stacked LSTM and a GRU.

P0's S4 attacker is an LSTM of 4 layers with 256, 256, 128 and 64 units; ``width``
scales the units (0.25 gives 64-64-32-16 and trains on a CPU in seconds). The map
``[channels, freq, time]`` becomes a sequence over time of ``channels x freq`` vectors,
first average-pooled so a step has at most 256 values and the sequence at most 48 steps.
"""

from __future__ import annotations

import torch
from torch import nn

from ser_audit.leakage.attackers.design import Design

P0_LSTM_UNITS = (256, 256, 128, 64)
MAX_STEP, MAX_STEPS = 256, 48


def _sequence_shape(shape: tuple[int, ...]) -> tuple[tuple[int, ...], int, int]:
    """(pooled map size, step width, steps) for a map whose last axis is time."""
    if len(shape) == 3:
        channels, freq, time = shape
        freq = max(1, min(freq, MAX_STEP // max(1, channels)))
        channels_kept = min(channels, MAX_STEP) if freq == 1 else channels
        return (channels_kept, freq, min(time, MAX_STEPS)), channels_kept * freq, min(time, MAX_STEPS)
    if len(shape) == 2:
        features, time = shape
        return (min(features, MAX_STEP), min(time, MAX_STEPS)), min(features, MAX_STEP), min(time, MAX_STEPS)
    raise ValueError(f"a recurrent attacker needs a map with a time axis, not shape {shape}")


class _Sequence(nn.Module):
    """Map to a pooled ``[batch, steps, step width]`` sequence."""

    def __init__(self, size: tuple[int, ...]) -> None:
        super().__init__()
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:
            x = nn.functional.adaptive_avg_pool3d(x.unsqueeze(1), self.size).squeeze(1)  # type: ignore[arg-type]
            return x.flatten(1, 2).transpose(1, 2)
        x = nn.functional.adaptive_avg_pool2d(x.unsqueeze(1), self.size).squeeze(1)  # type: ignore[arg-type]
        return x.transpose(1, 2)


class _Stacked(nn.Module):
    """Recurrent layers of given sizes, one after another; the last step of the top layer."""

    def __init__(self, cell: type, step: int, units: tuple[int, ...], size: tuple[int, ...]) -> None:
        super().__init__()
        self.sequence = _Sequence(size)
        sizes = (step, *units)
        self.layers = nn.ModuleList(cell(a, b, batch_first=True) for a, b in zip(sizes[:-1], sizes[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.sequence(x)
        for layer in self.layers:
            x, _ = layer(x)
        return x[:, -1]


def _units(base: tuple[int, ...], width: float) -> tuple[int, ...]:
    return tuple(max(4, int(round(u * width))) for u in base)


def lstm(shape: tuple[int, ...], width: float) -> nn.Module:
    size, step, _ = _sequence_shape(shape)
    return _Stacked(nn.LSTM, step, _units(P0_LSTM_UNITS, width), size)


def gru(shape: tuple[int, ...], width: float) -> nn.Module:
    size, step, _ = _sequence_shape(shape)
    return _Stacked(nn.GRU, step, _units((256, 128), width), size)


def _describe_lstm(shape: tuple[int, ...], width: float) -> str:
    size, step, steps = _sequence_shape(shape)
    units = "-".join(map(str, _units(P0_LSTM_UNITS, width)))
    return f"LSTM {units} (P0's 256-256-128-64 x{width:g}) over {steps} steps of {step}"


def _describe_gru(shape: tuple[int, ...], width: float) -> str:
    size, step, steps = _sequence_shape(shape)
    return f"GRU {'-'.join(map(str, _units((256, 128), width)))} over {steps} steps of {step}"


DESIGNS = (
    Design("lstm", "recurrent", "map", lstm, _describe_lstm),
    Design("gru", "recurrent", "map", gru, _describe_gru),
)
