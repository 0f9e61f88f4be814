"""Model families: what a target is, read from its layer kinds, and which families stand for
"another family" in P0's s4 (entry-point group ``ser_audit.model_families``).

A family is asked in priority order whether a target's layers are its own; the first that says
yes is the target's family. Its attacker designs are those registered with the same family name
(``ser_audit.leakage.attackers.design``), and ``others`` names the families s4 switches to.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Sequence

from ser_audit.models.interface import LayerInfo

GROUP = "ser_audit.model_families"


@dataclass(frozen=True)
class Family:
    """A model family.

    Attributes:
        name: ``recurrent``, ``transformer``, ``convolutional``, ``dense``...
        priority: Lower is asked first (a CNN in front of a GRU is recurrent; a convolutional
            feature encoder in front of transformer blocks is a transformer).
        kinds: A pattern any of the target's layer kinds matches; None matches every target.
        others: The families whose first design plays s4 ("another family").
        graph: A further test on the model's operator kinds (``TargetModel.operators``), for what
            the layers cannot say (attention exported to ONNX is MatMul and Softmax, not a named block).
    """

    name: str
    priority: int
    kinds: re.Pattern[str] | None
    others: tuple[str, ...]
    graph: Callable[[set[str]], bool] | None = None

    def matches(self, layers: Sequence[LayerInfo], operators: set[str] | None = None) -> bool:
        if self.kinds is None and self.graph is None:
            return True
        return (self.kinds is not None and any(self.kinds.search(layer.kind) for layer in layers)) or (
            self.graph is not None and self.graph(operators or set()))


def families(*, strict: bool = False) -> list[Family]:
    """Every registered family, in the order they are asked."""
    from ser_audit.plugins import load_plugins

    found = load_plugins(GROUP, kind="model family", strict=strict)
    return sorted(found.values(), key=lambda family: (family.priority, family.name))


def family_of(name: str) -> Family:
    return next(family for family in families() if family.name == name)


def target_family(layers: Sequence[LayerInfo], operators: set[str] | None = None) -> str:
    """The first family, in priority order, whose kinds the target's layers (or operators) show."""
    return next((family.name for family in families() if family.matches(layers, operators)), "dense")
