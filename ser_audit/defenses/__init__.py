"""Defenses: a protected copy of a model. ``projection`` and ``adversarial`` remove an attribute from one
layer (``ser-audit protect``); plugins register through the ``ser_audit.defenses`` entry-point group
(a class taking no arguments), like the bundled ones.
"""

from __future__ import annotations

from ser_audit.defenses.interface import Defense, Protected, ProtectionData

DEFENSE_GROUP = "ser_audit.defenses"

__all__ = ["DEFENSE_GROUP", "Defense", "Protected", "ProtectionData", "defense", "defenses"]


def defenses() -> dict[str, type[Defense]]:
    from ser_audit.plugins import load_plugins

    return load_plugins(DEFENSE_GROUP, kind="defense")


def defense(name: str) -> Defense:
    from ser_audit.plugins import registered

    return registered(DEFENSE_GROUP, name, kind="defense", flag="--method")()
