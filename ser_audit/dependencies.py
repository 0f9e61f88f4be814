"""The compiled pair every model command needs, checked once before the command starts.

torch and torchaudio ship compiled extensions built against one CUDA version; torchaudio
refuses to import beside a torch built for another. A broken pair then surfaces as one line
naming both installed versions and the pip command that restores the pinned pair, instead
of an internal error deep inside a command. ``report`` and ``gate`` never need it.
"""

from __future__ import annotations

import re
from importlib import metadata

from ser_audit.errors import DependencyError

COMPILED_PAIR = ("torch", "torchaudio")
# Kept equal to pyproject.toml's pins (a test compares them); used where ser-audit is not installed.
PINNED = {"torch": "torch==2.14.1", "torchaudio": "torchaudio==2.11.0"}


def installed_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def pinned_requirements() -> list[str]:
    """The pair's requirements as the installed ser-audit declares them (falls back to ``PINNED``)."""
    try:
        declared = metadata.requires("ser-audit") or []
    except metadata.PackageNotFoundError:
        declared = []
    found = {}
    for requirement in declared:
        spec = requirement.split(";")[0].strip()
        name = re.split(r"[\s<>=!~\[]", spec, maxsplit=1)[0].lower()
        if name in COMPILED_PAIR:
            found[name] = spec.replace(" ", "")
    return [found.get(name, PINNED[name]) for name in COMPILED_PAIR]


def require_torch() -> None:
    """Import torch and torchaudio, or raise DependencyError with the fix in one line."""
    try:
        import torch  # noqa: F401
        import torchaudio  # noqa: F401
    except Exception as error:  # ImportError, OSError (a missing .so) or torchaudio's RuntimeError
        raise DependencyError(broken_pair_message(error)) from error


def broken_pair_message(error: BaseException) -> str:
    detail = next((line.strip() for line in str(error).splitlines() if line.strip()), "")
    installed = " and ".join(f"{name} {installed_version(name)}" for name in COMPILED_PAIR)
    wanted = " ".join(pinned_requirements())
    return (
        f"torch and torchaudio cannot be imported ({installed} installed; {type(error).__name__}: {detail}); "
        f"ser-audit needs the pair {wanted}: run `pip install {wanted}`"
    )
