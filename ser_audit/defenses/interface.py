"""Defenses turn a model's torch path into a protected copy, for one of two purposes.

- ``AttributeRemoval`` (``ser-audit protect``): the copy carries less of an attribute at one layer.
  What it is judged by is not its own doing: ``runner.protect`` re-audits the copy with attackers
  trained afterwards (informed) and with the unprotected model's attackers (ignorant). The
  defense's own adversary, where it has one, is reported only as a contrast.
- ``AdversarialTraining`` (``ser-audit harden``): the copy keeps its predictions under FGSM (P2).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import torch
from torch import nn

from ser_audit.progress import NULL_OBSERVER, ProgressObserver

if TYPE_CHECKING:
    from ser_audit.corpus.interface import Corpus
    from ser_audit.models.interface import TargetModel
    from ser_audit.robustness.hardening import HardeningRecipe


@dataclass
class ProtectionData:
    """The protection's training utterances as the model sees them (never the audit corpus's speakers).

    ``inputs(rows)`` gives the model's fed inputs for a tensor of row indices (the primary input, then
    any neutral reference); ``emotion`` and ``attribute`` are class indices per row.
    """

    inputs: Callable[[torch.Tensor], list[torch.Tensor]]
    emotion: torch.Tensor
    attribute: torch.Tensor
    attribute_classes: list[str]
    time_axis: int | None
    description: str

    def __len__(self) -> int:
        return len(self.emotion)


@dataclass
class Protected:
    """A protected copy and what its own training saw.

    ``own_adversary`` is the defense's own attribute classifier's balanced accuracy on its training
    data at the end (``None`` where the defense has none): a contrast, never the result.
    """

    module: nn.Module
    strength: float
    description: str
    own_adversary: float | None = None


class Defense(ABC):
    """A registered defense: its name (the ``--method`` value) and its purpose."""

    name: str
    purpose: str  # "attribute" (protect) or "robustness" (harden)


class AdversarialTraining(Defense):
    """Fine-tuning against FGSM data; ``recipe`` (``robustness.hardening.HardeningRecipe``) sets the losses."""

    purpose = "robustness"

    @abstractmethod
    def harden(self, module: nn.Module, model: "TargetModel", corpus: "Corpus", recipe: "HardeningRecipe", *,
               device: str = "cpu", observer: ProgressObserver = NULL_OBSERVER) -> nn.Module:
        """``module`` fine-tuned in place on ``corpus``'s training utterances."""


class AttributeRemoval(Defense):
    """One way to remove an attribute from a layer; ``strength`` is the method's own knob (``default_strengths``)."""

    purpose = "attribute"
    default_strengths: tuple[float, ...]
    # Whether the copy changes only by a fixed layer inserted after LAYER (no weight is trained).
    inserts_layer: bool = False

    @abstractmethod
    def protect(self, module: nn.Module, layer: str, data: ProtectionData, strength: float, *, quick: bool = False,
                seed: int = 0, device: str = "cpu", observer: ProgressObserver = NULL_OBSERVER) -> Protected:
        """A protected copy of ``module`` (left untouched) whose submodule ``layer`` carries less of the attribute."""
