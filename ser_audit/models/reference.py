"""What a reference-model plugin declares: the model, its paper, and its training recipe."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from torch import nn

from ser_audit.frontend.spec import FrontEndSpec


@dataclass(frozen=True)
class Training:
    """Training recipe on the embedded corpus (scaled down from the paper to run on a CPU in minutes)."""

    epochs: int = 30
    learning_rate: float = 1e-3
    batch_size: int = 32
    weight_decay: float = 0.0


@dataclass(frozen=True)
class ReferenceModel:
    """A bundled audit target.

    Attributes:
        name: Name after ``zoo:``.
        paper: Which paper it comes from.
        description: One line for ``zoo list``.
        build: ``build(n_classes=..., **config)`` returns a fresh module.
        config: Keyword arguments for ``build`` (width factor and the like).
        frontend: Front-end spec; the emotion list is filled in from the training corpus.
        training: Training recipe.
        version: Bump when the architecture or recipe changes, so caches are rebuilt.
    """

    name: str
    paper: str
    description: str
    build: Callable[..., nn.Module]
    frontend: FrontEndSpec
    config: dict[str, Any] = field(default_factory=dict)
    training: Training = Training()
    version: int = 1
