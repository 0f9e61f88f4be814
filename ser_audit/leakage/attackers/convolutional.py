"""Convolutional attackers: VGG-, ResNet- and DenseNet-style networks sized to the tap's shape.

P0's S2/S3 attackers are VGG19, ResNet50 and DenseNet121 on the tapped map. Those do
not train on a CPU in an audit's time, so each design here keeps its family's defining
block (stacked 3x3 convolutions; residual blocks; densely connected blocks) at two
stages. Maps ``[channels, freq, time]`` use 2-D convolutions, ``[features, time]`` 1-D;
the map is first average-pooled to at most 16 x 32 (freq x time), which the row records.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ser_audit.leakage.attackers.design import Design

MAX_FREQ, MAX_TIME = 16, 32


def _ops(shape: tuple[int, ...]) -> tuple[type, type, type, type, nn.Module, tuple[int, ...]]:
    """Conv, batch norm, max pool, global pool classes and the input pooling for a map shape."""
    if len(shape) == 3:
        size: tuple[int, ...] = (min(shape[1], MAX_FREQ), min(shape[2], MAX_TIME))
        return nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool2d(size), size
    if len(shape) == 2:
        size = (min(shape[1], MAX_TIME),)
        return nn.Conv1d, nn.BatchNorm1d, nn.MaxPool1d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool1d(size[0]), size
    raise ValueError(f"a convolutional attacker needs a map with a time axis, not shape {shape}")


def _pool_kernel(size: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(2 if s >= 2 else 1 for s in size)


def _half(size: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(max(1, s // 2) for s in size)


def _base(width: float) -> int:
    return max(8, int(round(32 * width)))


def _conv_block(conv: type, norm: type, cin: int, cout: int) -> list[nn.Module]:
    return [conv(cin, cout, 3, padding=1, bias=False), norm(cout), nn.ReLU()]


def vgg(shape: tuple[int, ...], width: float) -> nn.Module:
    conv, norm, maxpool, gpool, reduce, size = _ops(shape)
    c = _base(width)
    layers: list[nn.Module] = [reduce]
    layers += _conv_block(conv, norm, shape[0], c) + _conv_block(conv, norm, c, c) + [maxpool(_pool_kernel(size))]
    layers += _conv_block(conv, norm, c, 2 * c) + _conv_block(conv, norm, 2 * c, 2 * c)
    layers += [gpool(1), nn.Flatten(), nn.Linear(2 * c, 4 * c), nn.ReLU(), nn.Dropout(0.3)]
    return nn.Sequential(*layers)


class _Residual(nn.Module):
    def __init__(self, conv: type, norm: type, cin: int, cout: int, stride: tuple[int, ...]) -> None:
        super().__init__()
        self.main = nn.Sequential(
            conv(cin, cout, 3, stride=stride, padding=1, bias=False), norm(cout), nn.ReLU(),
            conv(cout, cout, 3, padding=1, bias=False), norm(cout),
        )
        needs_projection = cin != cout or any(s != 1 for s in stride)
        self.shortcut = (
            nn.Sequential(conv(cin, cout, 1, stride=stride, bias=False), norm(cout)) if needs_projection else nn.Identity()
        )
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.main(x) + self.shortcut(x))


def resnet(shape: tuple[int, ...], width: float) -> nn.Module:
    conv, norm, _, gpool, reduce, size = _ops(shape)
    c = _base(width)
    return nn.Sequential(
        reduce, *_conv_block(conv, norm, shape[0], c),
        _Residual(conv, norm, c, c, (1,) * len(size)), _Residual(conv, norm, c, 2 * c, _pool_kernel(size)),
        gpool(1), nn.Flatten(),
    )


class _DenseBlock(nn.Module):
    def __init__(self, conv: type, norm: type, cin: int, growth: int, layers: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            nn.Sequential(norm(cin + k * growth), nn.ReLU(), conv(cin + k * growth, growth, 3, padding=1, bias=False))
            for k in range(layers)
        )
        self.channels = cin + layers * growth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = torch.cat([x, layer(x)], dim=1)
        return x


def densenet(shape: tuple[int, ...], width: float) -> nn.Module:
    conv, norm, _, gpool, reduce, size = _ops(shape)
    c = _base(width)
    first = _DenseBlock(conv, norm, c, c // 2, 3)
    avgpool = nn.AvgPool2d if len(size) == 2 else nn.AvgPool1d
    transition = nn.Sequential(norm(first.channels), nn.ReLU(), conv(first.channels, c, 1, bias=False),
                               avgpool(_pool_kernel(size)))  # type: ignore[arg-type]  # a 2- or 1-tuple, as the pool
    second = _DenseBlock(conv, norm, c, c // 2, 3)
    return nn.Sequential(
        reduce, conv(shape[0], c, 3, padding=1, bias=False), first, transition, second,
        norm(second.channels), nn.ReLU(), gpool(1), nn.Flatten(),
    )


def _describe(name: str, blocks: str) -> Callable[[tuple[int, ...], float], str]:
    def describe(shape: tuple[int, ...], width: float) -> str:
        *_, size = _ops(shape)
        c = _base(width)
        dims = f"{len(size)}-D"
        pooled = "x".join(map(str, size))
        return f"{name} {dims} CNN ({blocks.format(c=c, c2=2 * c, g=c // 2)}), input averaged to {pooled}"

    return describe


DESIGNS = (
    Design("vgg", "convolutional", "map", vgg, _describe("VGG-style", "2 stages of two 3x3 convs, {c}-{c2} channels")),
    Design("resnet", "convolutional", "map", resnet, _describe("ResNet-style", "stem + 2 residual blocks, {c}-{c2} channels")),
    Design("densenet", "convolutional", "map", densenet,
           _describe("DenseNet-style", "2 dense blocks of 3 layers, growth {g}")),
)
