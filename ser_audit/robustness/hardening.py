"""Adversarial training, P2's two defenses (Ren et al., ICASSP 2020, section 3).

Vanilla:    L = alpha * L(x, y) + (1 - alpha) * L(x', y),                          alpha = 0.5
Similarity: L = beta * L(x, y) + gamma * L(x', y) + (1 - beta - gamma) * ||v - v'||_2, beta = gamma = 0.4

x' is FGSM of x under the current weights; v, v' are the final fully connected features
(by default the input of the model's last linear layer). Adversarial data enters after a
warm-up, as P2 lets it in from iteration 1000 of 10 000.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ser_audit.corpus.interface import Corpus
from ser_audit.devices import moved
from ser_audit.errors import ConfigError
from ser_audit.frontend.inputs import FINE_TUNING_CROP_S, TrainingInputs
from ser_audit.models.differentiable import module_names_hint
from ser_audit.models.interface import TargetModel
from ser_audit.models.loop import balanced_class_weights, run_epochs, torch_shuffle
from ser_audit.progress import NULL_OBSERVER, ProgressObserver
from ser_audit.robustness.fgsm import FGSM

METHODS = ("vanilla", "similarity")


@dataclass(frozen=True)
class HardeningRecipe:
    method: str
    eps: float = 0.02  # relative to the spread of the model's input features
    epochs: int = 12
    warmup_epochs: int = 2
    learning_rate: float = 5e-4
    batch_size: int = 32
    alpha: float = 0.5
    beta: float = 0.4
    gamma: float = 0.4
    feature_layer: str | None = None
    crop_s: float = FINE_TUNING_CROP_S  # variable-length models train on random crops this long (P4's training crops)
    seed: int = 0

    def check(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"--method {self.method!r}: use vanilla or similarity")
        if not 0 < self.eps < float("inf"):
            raise ConfigError(f"--eps must be positive (got {self.eps})")
        if self.epochs < 1 or not 0 <= self.warmup_epochs < self.epochs:
            raise ConfigError(f"--epochs must be at least 1 and above --warmup-epochs (got {self.epochs}, {self.warmup_epochs})")
        if not self.crop_s > 0:
            raise ConfigError(f"crop_s must be positive (got {self.crop_s})")
        if not (0 <= self.alpha <= 1 and 0 <= self.beta and 0 <= self.gamma and self.beta + self.gamma <= 1):
            raise ConfigError("weights must satisfy 0 <= alpha <= 1 and beta, gamma >= 0 with beta + gamma <= 1")


def training_indices(model: TargetModel, corpus: Corpus) -> np.ndarray:
    """Utterances to train on: never the reference model's held-out session, and only the model's emotions."""
    held_out = (model.training or {}).get("held_out_session")
    same_corpus = (model.training or {}).get("training_corpus") == corpus.name
    return np.array([
        i for i, u in enumerate(corpus)
        if u.emotion in model.frontend.emotions and not (held_out and same_corpus and u.session == held_out)
    ])


def _final_features_module(module: nn.Module, name: str | None) -> nn.Module:
    modules = dict(module.named_modules())
    if name is not None:
        if name not in modules:
            raise ConfigError(f"--feature-layer {name!r} is not a module of the model's torch path; "
                              + module_names_hint(module))
        return modules[name]
    linears = [m for m in modules.values() if isinstance(m, nn.Linear)]
    if not linears:
        raise ConfigError("similarity training needs the final fully connected features; name them with --feature-layer")
    return linears[-1]


class _WithExtraInputs(nn.Module):
    """The model with its further inputs fixed for one mini-batch, so FGSM perturbs the utterance only."""

    def __init__(self, module: nn.Module, extra: list[torch.Tensor]) -> None:
        super().__init__()
        self.module, self.extra = module, extra

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.module(features, *self.extra)


def harden(
    module: nn.Module,
    model: TargetModel,
    corpus: Corpus,
    recipe: HardeningRecipe,
    *,
    device: str = "cpu",
    observer: ProgressObserver = NULL_OBSERVER,
) -> nn.Module:
    """Fine-tune ``module`` (the model's differentiable path) with the recipe's adversarial loss, in place.

    Further inputs (P4's neutral reference) are fed from ``corpus`` and never perturbed: the fixed
    reference for a fixed-length model; for a variable-length one, which trains on random crops of
    ``recipe.crop_s`` seconds as P4 does, a random neutral utterance of the speaker per example.
    Training runs on ``device`` (resolved: ``cpu``, ``cuda``, ``cuda:N``): the inputs are made on the CPU and
    each mini-batch goes there once; ``module`` is back where it was afterwards.
    """
    recipe.check()
    spec = model.frontend
    indices = training_indices(model, corpus)
    subset = corpus.subset(indices)
    labels = torch.tensor([spec.emotions.index(u.emotion) for u in subset])
    # The model's fed inputs (primary, then any reference); ``torch_module`` makes the auxiliary ones.
    batch_inputs = TrainingInputs.fine_tuning(spec, corpus, indices, crop_s=recipe.crop_s, seed=recipe.seed,
                                              observer=observer)
    with torch.no_grad():
        spread = float(torch.cat([batch_inputs(rows)[0].flatten() for rows in torch.arange(len(labels)).split(64)]).std())
    eps = recipe.eps * spread
    loss_function = nn.CrossEntropyLoss(weight=balanced_class_weights(labels, len(spec.emotions)).to(device))
    captured: list[torch.Tensor] = []
    hook = None
    if recipe.method == "similarity":
        target = _final_features_module(module, recipe.feature_layer)
        if isinstance(target, nn.Linear) and recipe.feature_layer is None:
            hook = target.register_forward_pre_hook(lambda _m, inputs: captured.append(inputs[0]))
        else:
            hook = target.register_forward_hook(lambda _m, _i, output: captured.append(output))
    fgsm = FGSM(eps)

    def loss(rows: torch.Tensor, epoch: int) -> torch.Tensor:
        (x, *extra), y = [tensor.to(device) for tensor in batch_inputs(rows)], labels[rows].to(device)
        bound = _WithExtraInputs(module, extra) if extra else module
        captured.clear()
        # Kept ahead of FGSM after the warm-up too: dropping it would change batch-norm statistics.
        clean_loss = loss_function(bound(x), y)
        if epoch < recipe.warmup_epochs:
            return clean_loss
        adversarial = fgsm(bound, x, y)
        captured.clear()
        clean_loss = loss_function(bound(x), y)
        adversarial_loss = loss_function(bound(adversarial), y)
        if recipe.method == "vanilla":
            return recipe.alpha * clean_loss + (1 - recipe.alpha) * adversarial_loss
        distance = (captured[0] - captured[1]).flatten(1).norm(dim=1).mean()
        return recipe.beta * clean_loss + recipe.gamma * adversarial_loss + (1 - recipe.beta - recipe.gamma) * distance

    try:
        with moved(module, device), observer.task(f"adversarial training ({recipe.method})", total=recipe.epochs) as task:
            torch.manual_seed(recipe.seed)
            optimiser = torch.optim.Adam(module.parameters(), lr=recipe.learning_rate)
            run_epochs(module, optimiser, loss, torch.arange(len(labels)), epochs=recipe.epochs,
                       batch_size=recipe.batch_size, shuffle=torch_shuffle(recipe.seed),
                       on_epoch=lambda _epoch: task.advance())
    finally:
        if hook is not None:
            hook.remove()
        module.eval()
    return module
