"""The attacker-design type, a leaf that every design module and the registry import."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn

Builder = Callable[[tuple[int, ...], float], nn.Module]


@dataclass(frozen=True)
class Design:
    """An attacker design: its family, a builder and how the row names it.

    Attributes:
        name: Short name (``vgg``, ``lstm``...).
        family: ``convolutional``, ``recurrent`` or ``dense``.
        input: ``map`` (whole activation maps, time last) or ``pooled`` (mean and std over time).
        build: ``(input shape without batch, width) -> module`` returning ``[batch, features]``.
        describe: ``(input shape, width) -> architecture string`` for the report.
    """

    name: str
    family: str
    input: str
    build: Builder
    describe: Callable[[tuple[int, ...], float], str]
