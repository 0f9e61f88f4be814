"""Transformer attackers over the tap's time axis, for s2 and s3 on a transformer target.

The map becomes a sequence over time (pooled to at most 48 steps of at most 256 values, as
for the recurrent attackers), is projected to the model width, runs through pre-LN encoder
blocks and is averaged over steps. Three designs vary what P0's same-family attackers vary:
depth, width and heads.
"""

from __future__ import annotations

import torch
from torch import nn

from ser_audit.leakage.attackers.design import Design
from ser_audit.leakage.attackers.recurrent import _Sequence, _sequence_shape


class _Encoder(nn.Module):
    def __init__(self, shape: tuple[int, ...], width: int, depth: int, heads: int) -> None:
        super().__init__()
        size, step, _ = _sequence_shape(shape)
        self.sequence = _Sequence(size)
        self.project = nn.Linear(step, width)
        block = nn.TransformerEncoderLayer(width, heads, dim_feedforward=2 * width, dropout=0.1, batch_first=True,
                                           norm_first=True)
        self.blocks = nn.TransformerEncoder(block, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.blocks(self.project(self.sequence(x)))).mean(1)


def _width(base: int, width: float, heads: int) -> int:
    return max(heads * 4, int(round(base * width / heads)) * heads)


def _design(name: str, base: int, depth: int, heads: int) -> Design:
    def build(shape: tuple[int, ...], width: float) -> nn.Module:
        return _Encoder(shape, _width(base, width, heads), depth, heads)

    def describe(shape: tuple[int, ...], width: float) -> str:
        _, step, steps = _sequence_shape(shape)
        return (f"transformer encoder: {depth} pre-LN blocks of width {_width(base, width, heads)}, {heads} heads, "
                f"over {steps} steps of {step}")

    return Design(name, "transformer", "map", build, describe)


DESIGNS = (
    _design("transformer-2x128", 128, depth=2, heads=4),
    _design("transformer-4x64", 64, depth=4, heads=2),
    _design("transformer-1x256", 256, depth=1, heads=8),
)
