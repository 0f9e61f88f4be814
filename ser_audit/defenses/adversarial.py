"""Adversarial removal: fine-tune the model so a layer carries less of the attribute, keeping emotion.

An attribute head reads the layer's mean and std over time through a gradient-reversal layer
(Ganin & Lempitsky, ICML 2015): the head learns the attribute, and the layers up to LAYER get
the head's gradient reversed and scaled by the strength, while the emotion loss keeps the task.
Everything after LAYER trains for emotion alone. The emotion loss is distillation: the cross-entropy
against the unprotected model's own emotion predictions. The protection corpus is other data, and
its labels would also pull the model towards it: on zoo:cnn4 at strength 0, training on the labels
of ravdess-like cost 0.04 UAR on the audit corpus, distillation nothing. The attribute loss is
class-weighted. Batch-norm
statistics stay the model's own: the protection corpus is other speakers (often another corpus),
and normalisers re-estimated there would move emotion recognition on the audit corpus more than
the protection does.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from ser_audit.defenses.interface import AttributeRemoval, Protected, ProtectionData
from ser_audit.defenses.tap import captured, pooled
from ser_audit.models.eager import logits_of
from ser_audit.models.loop import balanced_class_weights, run_epochs, torch_shuffle
from ser_audit.progress import NULL_OBSERVER, ProgressObserver


class _Reversal(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, features: torch.Tensor, strength: float) -> torch.Tensor:
        ctx.strength = strength
        return features.view_as(features)

    @staticmethod
    def backward(ctx: Any, gradient: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.strength * gradient, None


def reversed_gradient(features: torch.Tensor, strength: float) -> torch.Tensor:
    """Identity forward; the gradient flips sign and is scaled by ``strength`` backward."""
    return _Reversal.apply(features, strength)


class AdversarialDefense(AttributeRemoval):
    """Gradient reversal at the layer; strength is the reversal's scale."""

    name = "adversarial"
    default_strengths = (0.1, 0.3, 1.0)

    def __init__(self, epochs: int | None = None, learning_rate: float = 5e-4, batch_size: int = 32) -> None:
        self.epochs, self.learning_rate, self.batch_size = epochs, learning_rate, batch_size

    def protect(self, module: nn.Module, layer: str, data: ProtectionData, strength: float, *, quick: bool = False,
                seed: int = 0, device: str = "cpu", observer: ProgressObserver = NULL_OBSERVER) -> Protected:
        epochs = self.epochs or (4 if quick else 10)
        protected = copy.deepcopy(module).to(device)
        original = copy.deepcopy(module).to(device).eval()
        torch.manual_seed(seed)
        with torch.no_grad(), captured(protected, layer) as outputs:
            protected.eval()
            protected(*[tensor.to(device) for tensor in data.inputs(torch.arange(min(2, len(data))))])
            width = pooled(outputs[-1], data.time_axis).shape[1]
        classes = len(data.attribute_classes)
        head = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, 64), nn.ReLU(), nn.Linear(64, classes)).to(device)
        attribute_loss = nn.CrossEntropyLoss(weight=balanced_class_weights(data.attribute, classes).to(device))
        correct = torch.zeros(classes)
        seen = torch.zeros(classes)
        norms = [m for m in protected.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]

        def loss(rows: torch.Tensor, epoch: int) -> torch.Tensor:
            for norm in norms:  # the loop puts the model in training mode each epoch
                norm.eval()
            inputs = [tensor.to(device) for tensor in data.inputs(rows)]
            with captured(protected, layer) as outputs:
                logits = logits_of(protected(*inputs))
            with torch.no_grad():
                kept = torch.softmax(logits_of(original(*inputs)), dim=1)
            guessed = head(reversed_gradient(pooled(outputs[-1], data.time_axis), strength))
            truth = data.attribute[rows].to(device)
            if epoch == epochs - 1:
                hits = (guessed.argmax(1) == truth).float().cpu()
                correct.index_add_(0, truth.cpu(), hits)
                seen.index_add_(0, truth.cpu(), torch.ones_like(hits))
            distilled = -(kept * torch.log_softmax(logits, dim=1)).sum(1).mean()
            return distilled + attribute_loss(guessed, truth)

        optimiser = torch.optim.Adam([*protected.parameters(), *head.parameters()], lr=self.learning_rate)
        with observer.task(f"adversarial removal at {layer}, strength {strength:g}", total=epochs) as task:
            run_epochs(protected, optimiser, loss, torch.arange(len(data)), epochs=epochs, batch_size=self.batch_size,
                       shuffle=torch_shuffle(seed), min_batch_size=2, on_epoch=lambda _epoch: task.advance())
        own = float((correct / seen.clamp_min(1))[seen > 0].mean())
        return Protected(protected.cpu().eval(), strength,
                         f"gradient reversal at {layer}, strength {strength:g}, {epochs} epochs at {self.learning_rate:g}",
                         own_adversary=own)
