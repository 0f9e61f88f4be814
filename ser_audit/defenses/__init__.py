"""Defenses: a protected copy of a model. ``projection`` and ``adversarial`` remove an attribute from one
layer (``ser-audit protect``); ``vanilla`` and ``similarity`` are P2's adversarial training (``ser-audit
harden``). Plugins register through the ``ser_audit.defenses`` entry-point group (a class taking no
arguments), like the bundled ones.
"""

from __future__ import annotations

from ser_audit.defenses.interface import AdversarialTraining, AttributeRemoval, Defense, Protected, ProtectionData
from ser_audit.errors import ConfigError

DEFENSE_GROUP = "ser_audit.defenses"
_COMMANDS = {"attribute": "protect", "robustness": "harden"}

__all__ = ["DEFENSE_GROUP", "AdversarialTraining", "AttributeRemoval", "Defense", "Protected", "ProtectionData",
           "defense", "defenses"]


def defenses(purpose: str | None = None) -> dict[str, type[Defense]]:
    """Registered defenses by name, those of one ``purpose`` (``attribute``, ``robustness``) when given."""
    from ser_audit.plugins import load_plugins

    found = load_plugins(DEFENSE_GROUP, kind="defense")
    return {name: kind for name, kind in found.items() if purpose is None or kind.purpose == purpose}


def defense(name: str, purpose: str | None = None) -> Defense:
    """The defense ``name`` (ConfigError naming --method when unknown or meant for the other command)."""
    from ser_audit.plugins import registered

    if purpose is None:
        return registered(DEFENSE_GROUP, name, kind="defense", flag="--method")()
    every, fitting = defenses(), defenses(purpose)
    if name in fitting:
        return fitting[name]()
    choices = " or ".join(sorted(fitting))
    if name in every:
        raise ConfigError(f"--method {name}: that defense is for `ser-audit {_COMMANDS.get(every[name].purpose, '?')}`; "
                          f"`ser-audit {_COMMANDS[purpose]}` takes {choices}")
    raise ConfigError(f"--method {name!r}: use {choices} (or register a defense under the {DEFENSE_GROUP} entry points)")
