"""P2's adversarial training as defenses: ``vanilla`` and ``similarity`` (``robustness.hardening`` has the losses)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

from ser_audit.defenses.interface import AdversarialTraining
from ser_audit.progress import NULL_OBSERVER, ProgressObserver

if TYPE_CHECKING:
    from ser_audit.corpus.interface import Corpus
    from ser_audit.models.interface import TargetModel
    from ser_audit.robustness.hardening import HardeningRecipe


class _P2Training(AdversarialTraining):
    def harden(self, module: nn.Module, model: "TargetModel", corpus: "Corpus", recipe: "HardeningRecipe", *,
               device: str = "cpu", observer: ProgressObserver = NULL_OBSERVER) -> nn.Module:
        from dataclasses import replace

        from ser_audit.robustness.hardening import harden

        return harden(module, model, corpus, replace(recipe, method=self.name), device=device, observer=observer)


class VanillaTraining(_P2Training):
    """alpha·L(x, y) + (1 - alpha)·L(x', y) (P2, section 3)."""

    name = "vanilla"


class SimilarityTraining(_P2Training):
    """beta·L(x, y) + gamma·L(x', y) + (1 - beta - gamma)·||v - v'||_2 (P2, section 3)."""

    name = "similarity"
