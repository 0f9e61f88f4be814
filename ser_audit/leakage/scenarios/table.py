"""P0's attacker scenarios, and which attacker designs stand for each on a given target and tap.

| scenario | same family | same architecture | training data |
|----------|-------------|-------------------|---------------|
| worst    | yes         | yes               | same          |
| s1       | yes         | yes               | aux           |
| s2       | yes         | no                | same          |
| s3       | yes         | no                | aux           |
| s4       | no          | no                | aux           |

"Same architecture" is the target's own sub-network after the tap, trained for the attribute
(``same-architecture``: from the target's weights and from a fresh initialisation, the start and
learning rate chosen on held-out training speakers), P0's upper bound. Beside it,
``frozen-body-readout`` keeps the target's remaining layers frozen and fits a new linear head:
it measures what survives to the last hidden layer, whatever the tap. The target's family
is read from its layer kinds by the families registry (``ser_audit.leakage.families``):
recurrent if any layer is an LSTM/GRU/RNN, transformer if any is a self-attention encoder
block, convolutional if any is a convolution, else dense. A tap without a time axis (a vector) cannot feed a
convolutional or recurrent attacker; dense attackers stand in for the same family and
there is no other family to switch to, which the skipped entry says.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from ser_audit.models.interface import LayerInfo

SCENARIOS = ("worst", "s1", "s2", "s3", "s4")
KINDS = ("generic", "aware")
SAME_ARCHITECTURE = "same-architecture"
# The target's frozen remaining layers with a new linear head: what survives to the last hidden layer, not the tap.
SAME_ARCHITECTURE_FROZEN = "frozen-body-readout"
SAME_ARCHITECTURE_DESIGNS = (SAME_ARCHITECTURE_FROZEN, SAME_ARCHITECTURE)


@dataclass(frozen=True)
class Scenario:
    name: str
    same_family: bool
    same_architecture: bool
    training_data: str  # "same" or "aux"


TABLE = {
    "worst": Scenario("worst", True, True, "same"),
    "s1": Scenario("s1", True, True, "aux"),
    "s2": Scenario("s2", True, False, "same"),
    "s3": Scenario("s3", True, False, "aux"),
    "s4": Scenario("s4", False, False, "aux"),
}


def target_family(layers: Sequence[LayerInfo], operators: set[str] | None = None) -> str:
    """The target's family, from the families registry (``ser_audit.leakage.families``)."""
    from ser_audit.leakage.families import target_family as registered

    return registered(layers, operators)


def recurrent_cell(layers: Sequence[LayerInfo]) -> str | None:
    kinds = " ".join(layer.kind for layer in layers).lower()
    if "lstm" in kinds:
        return "lstm"
    if "gru" in kinds:
        return "gru"
    return None


@dataclass(frozen=True)
class Choice:
    """The designs standing for one scenario on one tap, or why there are none."""

    designs: tuple[str, ...]
    reason: str | None = None


def choose_designs(
    scenario: str, family: str, has_time_axis: bool, *, cell: str | None = None, quick: bool = False
) -> Choice:
    """Which attacker designs play ``scenario`` for a tap of a ``family`` target.

    Args:
        scenario: worst, s1-s4.
        family: The target's family (``target_family``).
        has_time_axis: Whether the tap keeps a time axis of at least two steps.
        cell: The target's recurrent cell, so "other recurrent design" means the other one.
        quick: One design per scenario instead of every design of the family.
    """
    from ser_audit.leakage.attackers.design import family_designs

    spec = TABLE[scenario]
    if spec.same_architecture:
        return Choice(SAME_ARCHITECTURE_DESIGNS)
    if not has_time_axis:
        if spec.same_family:
            dense = family_designs("dense")
            return Choice(dense[:1] if quick else dense)
        return Choice((), "the tap has no time axis, so no convolutional or recurrent attacker can read it; "
                          "dense attackers already stand for the same family (s2, s3)")
    if spec.same_family:
        same = family_designs(family)
        if family == "recurrent":  # other recurrent designs: not the target's own cell
            same = tuple(name for name in same if name != cell) or same[:1]
        return Choice(same[:1] if quick else same)
    # Another family: P0's LSTM for a convolutional or dense target, a CNN for a recurrent one, both
    # for a transformer; the first design of each.
    from ser_audit.leakage.families import family_of

    return Choice(tuple(design for other in family_of(family).others for design in family_designs(other)[:1]))
