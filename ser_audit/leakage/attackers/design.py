"""The attacker-design type and the registry of designs (entry-point group ``ser_audit.attacker_designs``).

A plugin adds designs by registering a ``Design`` or a sequence of them under that group;
the scenario table then picks designs by family (``family_designs``), never by name.
"""

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
        family: ``convolutional``, ``recurrent``, ``dense``, ``transformer`` (``ser_audit.leakage.families``).
        input: ``map`` (whole activation maps, time last) or ``pooled`` (mean and std over time).
        build: ``(input shape without batch, width) -> module`` returning ``[batch, features]``.
        describe: ``(input shape, width) -> architecture string`` for the report.
    """

    name: str
    family: str
    input: str
    build: Builder
    describe: Callable[[tuple[int, ...], float], str]


DESIGN_GROUP = "ser_audit.attacker_designs"
# The bundled entries come first, so each family's first design (what --quick runs) stays the same
# when a plugin adds designs.
_BUNDLED = ("convolutional", "recurrent", "dense", "transformer")


def designs() -> dict[str, Design]:
    """Every registered attacker design, by name: the bundled ones first, in their own order."""
    from ser_audit.plugins import load_plugins

    entries = load_plugins(DESIGN_GROUP, kind="attacker design")
    found: dict[str, Design] = {}
    for name in sorted(entries, key=lambda name: (_BUNDLED.index(name) if name in _BUNDLED else len(_BUNDLED), name)):
        registered = entries[name]
        for design in (registered,) if isinstance(registered, Design) else registered:
            found.setdefault(design.name, design)
    return found


def family_designs(family: str) -> tuple[str, ...]:
    """The registered designs of ``family`` (``convolutional``, ``recurrent``, ``dense``...), first one first."""
    return tuple(name for name, design in designs().items() if design.family == family)
