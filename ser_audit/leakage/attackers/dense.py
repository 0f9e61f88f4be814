"""Dense attackers on vectors: pooled statistics (mean and std over time) or a vector-shaped tap."""

from __future__ import annotations

from torch import nn

from ser_audit.leakage.attackers.design import Design


def _hidden(width: float) -> tuple[int, int]:
    return max(8, int(round(256 * width))), max(8, int(round(128 * width)))


def mlp(shape: tuple[int, ...], width: float) -> nn.Module:
    first, second = _hidden(width)
    inputs = 1
    for size in shape:
        inputs *= size
    return nn.Sequential(
        nn.Flatten(), nn.Linear(inputs, first), nn.ReLU(), nn.Dropout(0.3), nn.Linear(first, second), nn.ReLU()
    )


def wide(shape: tuple[int, ...], width: float) -> nn.Module:
    inputs = 1
    for size in shape:
        inputs *= size
    return nn.Sequential(nn.Flatten(), nn.Linear(inputs, max(16, int(round(1024 * width)))), nn.ReLU(), nn.Dropout(0.5))


DESIGNS = (
    Design("mlp", "dense", "pooled", mlp, lambda shape, w: f"MLP {'-'.join(map(str, _hidden(w)))} on {shape[-1]} inputs"),
    Design("wide", "dense", "pooled", wide,
           lambda shape, w: f"one-layer MLP {max(16, int(round(1024 * w)))} on {shape[-1]} inputs"),
)
