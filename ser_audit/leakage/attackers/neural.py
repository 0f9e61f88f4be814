"""Neural attackers: one training loop, many designs, generic or application-aware.

A design (a builder in ``convolutional``, ``recurrent``, ``dense`` or the target's own
sub-network) maps the attacker's input to a feature vector; the attacker puts a head for
the private attribute on it and, when application-aware (P0's A_a), a second head for the
emotion labels of its own training corpus, trained jointly (the two cross-entropies
summed). The attribute loss is class-weighted, so a training set with more women than
men does not tilt the attacker towards "female" on a test fold with more men.

Inputs may be float16 memory maps: a fit converts its rows to float32 once when they fit
under ``IN_MEMORY_BYTES``, else reads and converts each mini-batch on the fly.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted
from torch import nn

from ser_audit.leakage.attackers.interface import Attacker

Builder = Callable[[tuple[int, ...], float], nn.Module]

# Training rows up to this size (as float32) are held in memory for the whole fit.
IN_MEMORY_BYTES = 1 << 30


@dataclass(frozen=True)
class Design:
    """An attacker design: its family, a builder and how the row names it.

    Attributes:
        name: Short name (``vgg``, ``lstm``...).
        family: ``convolutional``, ``recurrent`` or ``dense``.
        input: ``map`` (whole activation maps, time last) or ``pooled`` (mean and std over time).
        build: ``(input shape without batch, width) -> module`` returning ``[batch, features]``.
        describe: ``(input shape, width) -> architecture string`` for the report.
    """

    name: str
    family: str
    input: str
    build: Builder
    describe: Callable[[tuple[int, ...], float], str]


class Rows:
    """Selected rows of a (memory-mapped) array, read only when a mini-batch asks for them.

    Fold training sets are passed this way, so no more than one fold's rows are ever copied into
    RAM, and only when they are small enough (``IN_MEMORY_BYTES``).
    """

    def __init__(self, array: np.ndarray, index: np.ndarray) -> None:
        self.array = array
        self.index = np.asarray(index)
        self.shape = (len(self.index), *array.shape[1:])
        self.ndim = array.ndim

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, key: slice | np.ndarray) -> np.ndarray:
        return np.asarray(self.array[self.index[key]])


def designs() -> dict[str, Design]:
    from ser_audit.leakage.attackers import convolutional, dense, recurrent

    return {d.name: d for d in (*convolutional.DESIGNS, *recurrent.DESIGNS, *dense.DESIGNS)}


class NeuralAttacker(Attacker):
    """A torch attacker with the scikit-learn estimator contract.

    Args:
        design: A name from ``designs()``, or ``"same-architecture"`` with ``body`` given.
        aware: Application-aware (attribute + emotion); ``fit`` then needs ``emotion``.
        epochs: Passes over the training data.
        learning_rate: Adam step size.
        batch_size: Mini-batch size.
        width: Scales the design's channels/units (1.0 = the documented size).
        body: For the same-architecture attacker, the target's sub-network after the tap
            (copied, then fine-tuned).
        body_description: How the body was obtained, for the report.
        standardise: Standardise inputs per channel with training-set statistics (not for
            ``body``, which expects the target's own activations).
        seed: Seeds initialisation and mini-batch order.
        device: ``cpu`` or ``cuda``.
    """

    def __init__(
        self,
        design: str = "mlp",
        aware: bool = False,
        epochs: int = 12,
        learning_rate: float = 1e-3,
        batch_size: int = 32,
        width: float = 1.0,
        body: nn.Module | None = None,
        body_description: str = "",
        standardise: bool = True,
        seed: int = 0,
        device: str = "cpu",
    ) -> None:
        self.design = design
        self.aware = aware
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.width = width
        self.body = body
        self.body_description = body_description
        self.standardise = standardise
        self.seed = seed
        self.device = device

    @property
    def architecture(self) -> str:  # type: ignore[override]
        return getattr(self, "architecture_", self.design)

    @property
    def family(self) -> str:  # type: ignore[override]
        if self.design == "same-architecture":
            return "same-architecture"
        return designs()[self.design].family

    def _network(self, shape: tuple[int, ...]) -> tuple[nn.Module, str]:
        if self.body is not None:
            return copy.deepcopy(self.body), f"same-architecture: {self.body_description}"
        design = designs()[self.design]
        return design.build(shape, self.width), design.describe(shape, self.width)

    def _statistics(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-channel mean and std over training rows (axis 1 for maps, each feature for vectors)."""
        axes = (0, *range(2, X.ndim))
        total = np.zeros(X.shape[1]) if X.ndim > 1 else np.zeros(1)
        squares = np.zeros_like(total)
        count = 0
        for start in range(0, len(X), 256):
            block = np.asarray(X[start : start + 256], dtype=np.float64)
            total += block.sum(axis=axes)
            squares += (block**2).sum(axis=axes)
            count += block.size // block.shape[1]
        mean = total / count
        std = np.sqrt(np.maximum(squares / count - mean**2, 0.0))
        std[std < 1e-6] = 1.0
        shape = (1, -1) + (1,) * (X.ndim - 2)
        return mean.reshape(shape).astype(np.float32), std.reshape(shape).astype(np.float32)

    def _batch(self, X: np.ndarray, rows: np.ndarray) -> torch.Tensor:
        block = np.asarray(X[np.sort(rows)], dtype=np.float32)
        if self.standardise and self.body is None:
            block = (block - self.mean_) / self.std_
        return torch.from_numpy(block).to(self.device)

    def _reader(self, X: np.ndarray) -> Callable[[np.ndarray], torch.Tensor]:
        """Mini-batches of ``X`` (sorted rows): from one float32 copy when it is small enough, else
        read from the (memory-mapped) array batch by batch.

        Every epoch would otherwise convert the same float16 rows again, which costs about as much
        as the forward pass of a small attacker.
        """
        if not len(X) or len(X) * int(np.prod(X.shape[1:])) * 4 > IN_MEMORY_BYTES:
            return lambda rows: self._batch(X, rows)
        whole = torch.empty((len(X), *X.shape[1:]), dtype=torch.float32, device=self.device)
        for start in range(0, len(X), 256):
            whole[start : start + 256] = self._batch(X, np.arange(start, min(start + 256, len(X))))
        return lambda rows: whole[torch.from_numpy(np.sort(rows)).to(whole.device)]

    def fit(self, X: np.ndarray, y: np.ndarray, emotion: np.ndarray | None = None) -> "NeuralAttacker":
        if self.aware and emotion is None:
            raise ValueError("an application-aware attacker needs emotion labels")
        torch.manual_seed(self.seed)
        rng = np.random.default_rng(self.seed)
        self.classes_, targets = np.unique(np.asarray(y), return_inverse=True)
        if self.standardise and self.body is None:
            self.mean_, self.std_ = self._statistics(X)
        body, self.architecture_ = self._network(tuple(X.shape[1:]))
        body = body.to(self.device)
        batch = self._reader(X)
        with torch.no_grad():
            width = body.eval()(batch(np.arange(min(2, len(X))))).shape[1]
        # Heads read normalised features: a body taken from the target emits activations on its
        # own scale, which would otherwise make the new head's learning rate arbitrary.
        body = nn.Sequential(body, nn.BatchNorm1d(width, affine=False)).to(self.device)
        head = nn.Linear(width, len(self.classes_)).to(self.device)
        emotion_head: nn.Module | None = None
        emotion_targets = None
        if self.aware:
            self.emotions_, emotion_targets = np.unique(np.asarray(emotion), return_inverse=True)
            emotion_head = nn.Linear(width, len(self.emotions_)).to(self.device)
            self.architecture_ += " + emotion head (multi-task)"
        parameters = [*body.parameters(), *head.parameters(), *(emotion_head.parameters() if emotion_head else [])]
        optimiser = torch.optim.Adam(parameters, lr=self.learning_rate, weight_decay=1e-4)
        counts = np.bincount(targets, minlength=len(self.classes_)).astype(np.float32)
        weights = torch.from_numpy(len(targets) / (len(counts) * np.maximum(counts, 1))).to(self.device)
        attribute_loss = nn.CrossEntropyLoss(weight=weights)
        emotion_loss = nn.CrossEntropyLoss()
        body.train()
        for _ in range(self.epochs):
            order = rng.permutation(len(targets))
            for start in range(0, len(order), self.batch_size):
                rows = np.sort(order[start : start + self.batch_size])
                if len(rows) < 2:
                    continue  # batch norm needs two rows
                features = body(batch(rows))
                loss = attribute_loss(head(features), torch.from_numpy(targets[rows]).to(self.device))
                if emotion_head is not None and emotion_targets is not None:
                    loss = loss + emotion_loss(emotion_head(features), torch.from_numpy(emotion_targets[rows]).to(self.device))
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
        self._settle_batch_norm(body, batch, len(X))
        self.body_, self.head_, self.emotion_head_ = body.eval(), head.eval(), emotion_head
        return self

    def _settle_batch_norm(self, body: nn.Module, batch: Callable[[np.ndarray], torch.Tensor], n_rows: int) -> None:
        """Batch-norm statistics recomputed over the training data with the final weights.

        Running averages (momentum 0.1) lag far behind after the few hundred steps an attacker
        trains, and a lagging normaliser can push every test row to one class.
        """
        norms = [m for m in body.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if not norms:
            return
        body.eval()
        for norm in norms:
            norm.reset_running_stats()
            norm.momentum = None  # cumulative average over the pass below
            norm.train()
        with torch.no_grad():
            for start in range(0, n_rows, 128):
                rows = np.arange(start, min(start + 128, n_rows))
                if len(rows) > 1:
                    body(batch(rows))
        for norm in norms:
            norm.momentum = 0.1
        body.eval()

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        check_is_fitted(self, "head_")
        scores = []
        with torch.no_grad():
            for start in range(0, len(X), 128):
                rows = np.arange(start, min(start + 128, len(X)))
                scores.append(self.head_(self.body_(self._batch(X, rows))).cpu().numpy())
        return np.concatenate(scores)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.classes_[self.decision_function(X).argmax(1)]

    def parameter_count(self) -> int:
        check_is_fitted(self, "head_")
        modules = [self.body_, self.head_, *([self.emotion_head_] if self.emotion_head_ is not None else [])]
        return int(sum(p.numel() for m in modules for p in m.parameters()))
