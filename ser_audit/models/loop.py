"""The one training loop: epochs of shuffled mini-batches, each a loss, a backward pass and a step.

Reference models (``models.training``), adversarial hardening (``robustness.hardening``) and
the neural attackers (``leakage.attackers.neural``) all train through ``run_epochs``. What
differs between them is passed in: the loss of a mini-batch (a class-weighted cross-entropy
over any number of inputs, P2's adversarial loss, an attacker's multi-task loss), the shuffle,
the optimiser with its parameter groups, and a callback after each epoch (validation, best
epoch, progress).

Reproducibility is part of the contract: per epoch the loop draws exactly one permutation from
``shuffle`` and nothing else, so a seed gives the same weights whichever caller runs it.

Example:
    >>> import torch
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = torch.nn.Linear(3, 2)
    >>> x, y = torch.randn(10, 3), torch.tensor([0, 1] * 5)
    >>> loss = classification_loss(model, [x], y, class_weights=balanced_class_weights(y, 2))
    >>> optimiser = torch.optim.Adam(model.parameters(), lr=0.1)
    >>> run_epochs(model, optimiser, loss, torch.arange(10), epochs=2, batch_size=4, shuffle=torch_shuffle(0))
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any, Callable, Sequence, TypeVar

import numpy as np
import torch
from torch import nn

from ser_audit.errors import ConfigError
from ser_audit.models.reference import Stage

Rows = TypeVar("Rows", torch.Tensor, np.ndarray)
# The loss of one mini-batch: ``loss(rows, epoch)`` with ``rows`` indices into the training data.
BatchLoss = Callable[[Any, int], torch.Tensor]


def torch_shuffle(seed: int) -> Callable[[int], torch.Tensor]:
    """Permutations of ``range(n)`` from a private torch generator seeded with ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    return lambda n: torch.randperm(n, generator=generator)


def balanced_class_weights(targets: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Inverse class frequency, scaled so that balanced classes all weigh 1 (absent classes count once)."""
    counts = torch.bincount(targets, minlength=n_classes).float()
    return counts.sum() / (n_classes * counts.clamp_min(1))


def classification_loss(
    module: nn.Module, inputs: Sequence[torch.Tensor], targets: torch.Tensor, *, class_weights: torch.Tensor | None = None
) -> BatchLoss:
    """Cross-entropy of ``module(*inputs)`` on ``targets``, each input and the targets indexed by the batch's rows."""
    criterion = nn.CrossEntropyLoss(weight=class_weights)

    def loss(rows: torch.Tensor, _epoch: int) -> torch.Tensor:
        return criterion(module(*(tensor[rows] for tensor in inputs)), targets[rows])

    return loss


def run_epochs(
    module: nn.Module,
    optimiser: torch.optim.Optimizer,
    loss: BatchLoss,
    rows: Rows,
    *,
    epochs: int,
    batch_size: int,
    shuffle: Callable[[int], Rows],
    clip_grad_norm: float | None = None,
    rate_factor: Callable[[int], float] | None = None,
    min_batch_size: int = 1,
    on_epoch: Callable[[int], None] | None = None,
) -> None:
    """Train ``module`` for ``epochs`` passes over ``rows`` in shuffled mini-batches.

    Args:
        module: Put in training mode at the start of every epoch (a callback may switch it).
        optimiser: Stepped once per mini-batch.
        loss: ``loss(batch_rows, epoch)``, the scalar to minimise on a mini-batch.
        rows: Indices of the training data (a tensor or an array; ``shuffle`` returns the same kind).
        epochs: Number of passes.
        batch_size: Rows per mini-batch; the last one of an epoch may be smaller.
        shuffle: ``shuffle(n)`` is the epoch's permutation of ``range(n)``.
        clip_grad_norm: Largest global norm of the optimiser's gradients before a step.
        rate_factor: ``rate_factor(epoch)`` scales every group's initial rate in that epoch.
        min_batch_size: Mini-batches with fewer rows are skipped (batch norm needs two).
        on_epoch: Called with the epoch's index after it (validation, best epoch, progress).
    """
    initial_rates = [group["lr"] for group in optimiser.param_groups]
    parameters = [p for group in optimiser.param_groups for p in group["params"]]
    for epoch in range(epochs):
        if rate_factor is not None:
            for group, rate in zip(optimiser.param_groups, initial_rates):
                group["lr"] = rate * rate_factor(epoch)
        module.train()
        order = rows[shuffle(len(rows))]
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            if len(batch) < min_batch_size:
                continue
            optimiser.zero_grad()
            loss(batch, epoch).backward()
            if clip_grad_norm is not None:
                nn.utils.clip_grad_norm_(parameters, clip_grad_norm)
            optimiser.step()
        if on_epoch is not None:
            on_epoch(epoch)


def stage_optimiser(module: nn.Module, stage: Stage) -> torch.optim.Optimizer:
    """The stage's optimiser over ``module``'s parameters, its frozen groups left out (and their
    ``requires_grad`` turned off; ``unfreeze`` turns it back on).

    Without groups, one parameter group holds every parameter in ``module.parameters()`` order.
    """
    named = list(module.named_parameters())
    chosen: list[list[nn.Parameter]] = [[] for _ in stage.groups]
    rest: list[nn.Parameter] = []
    matched = [False] * len(stage.groups)
    for name, parameter in named:
        index = next((k for k, group in enumerate(stage.groups) if any(fnmatchcase(name, p) for p in group.patterns)), None)
        if index is None:
            rest.append(parameter)
        else:
            chosen[index].append(parameter)
            matched[index] = True
    for group, found in zip(stage.groups, matched):
        if not found:
            examples = ", ".join(name for name, _ in named[:6])
            raise ConfigError(
                f"parameter group {list(group.patterns)} matches no parameter of the model (names look like {examples})"
            )
    groups: list[dict[str, Any]] = [{"params": rest}] if rest else []
    for group, parameters in zip(stage.groups, chosen):
        if group.frozen:
            for parameter in parameters:
                parameter.requires_grad_(False)
            continue
        settings: dict[str, Any] = {"params": parameters}
        if group.learning_rate is not None:
            settings["lr"] = group.learning_rate
        if group.weight_decay is not None:
            settings["weight_decay"] = group.weight_decay
        groups.append(settings)
    if not groups:
        raise ConfigError("every parameter of the model is frozen in a training stage; nothing would train")
    if stage.optimiser == "sgd":
        return torch.optim.SGD(groups, lr=stage.learning_rate, momentum=stage.momentum, nesterov=stage.nesterov,
                               weight_decay=stage.weight_decay)
    return torch.optim.Adam(groups, lr=stage.learning_rate, weight_decay=stage.weight_decay)


def unfreeze(module: nn.Module) -> None:
    """Every parameter trainable again (after a stage that froze some)."""
    for parameter in module.parameters():
        parameter.requires_grad_(True)
