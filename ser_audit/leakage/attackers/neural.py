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
from typing import Callable, cast

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted
from torch import nn

from ser_audit.corpus.folds import inner_split
from ser_audit.leakage.attackers.design import designs
from ser_audit.leakage.attackers.interface import Attacker
from ser_audit.leakage.inference import balanced_accuracy
from ser_audit.models.loop import balanced_class_weights, run_epochs

# Training rows up to this size (as float32) are held in memory for the whole fit.
IN_MEMORY_BYTES = 1 << 30


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


class NeuralAttacker(Attacker):
    """A torch attacker with the scikit-learn estimator contract.

    When ``fit`` gets the speaker of every row (``groups``), a speaker-disjoint part of the
    training side (``validation``) chooses the epoch: the weights of the epoch with the best
    balanced accuracy there are kept, and ``validation_score_`` records it, so attackers can be
    compared without looking at the test speakers (the strongest-attacker row does).

    Args:
        design: A name from ``designs()``, or ``"same-architecture"`` with ``body`` given.
        aware: Application-aware (attribute + emotion); ``fit`` then needs ``emotion``.
        epochs: Passes over the training data (after the warm-up).
        learning_rate: Adam step size (of the heads, when ``body`` is given).
        batch_size: Mini-batch size.
        width: Scales the design's channels/units (1.0 = the documented size).
        body: For the same-architecture attacker, the target's sub-network after the tap
            (copied, then fine-tuned).
        body_description: How the body was obtained, for the report.
        body_learning_rate: Adam step size of ``body`` (P0 fine-tunes at 1e-4): the target's
            trained weights move less than the new heads, which first get a closed-form
            warm-up (ridge on the frozen body's features) so fine-tuning starts from a head
            that already reads the body.
        freeze_body: Stop after the warm-up: a probe on the target's own, frozen sub-network.
        validation: Share of each class's training speakers held out for choosing the epoch.
        standardise: Standardise inputs per channel with training-set statistics (not for
            ``body``, which expects the target's own activations).
        seed: Seeds initialisation, mini-batch order and the validation split.
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
        body_learning_rate: float = 1e-4,
        freeze_body: bool = False,
        validation: float = 0.2,
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
        self.body_learning_rate = body_learning_rate
        self.freeze_body = freeze_body
        self.validation = validation
        self.standardise = standardise
        self.seed = seed
        self.device = device

    @property
    def architecture(self) -> str:  # type: ignore[override]
        return getattr(self, "architecture_", self.design)

    @property
    def family(self) -> str:  # type: ignore[override]
        if self.design.startswith("same-architecture"):
            return "same-architecture"
        return designs()[self.design].family

    def _network(self, shape: tuple[int, ...]) -> tuple[nn.Module, str]:
        if self.body is not None:
            how = "frozen, ridge probe on top" if self.freeze_body else (
                f"fine-tuned at {self.body_learning_rate:g} from a ridge head on the frozen body")
            return copy.deepcopy(self.body), f"same-architecture ({how}): {self.body_description}"
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

    def fit(
        self, X: np.ndarray, y: np.ndarray, emotion: np.ndarray | None = None, groups: np.ndarray | None = None
    ) -> "NeuralAttacker":
        if self.aware and emotion is None:
            raise ValueError("an application-aware attacker needs emotion labels")
        torch.manual_seed(self.seed)
        self.classes_, targets = np.unique(np.asarray(y), return_inverse=True)
        if self.standardise and self.body is None:
            self.mean_, self.std_ = self._statistics(X)
        body, self.architecture_ = self._network(tuple(X.shape[1:]))
        batch = self._reader(X)
        with torch.no_grad():
            width = body.to(self.device).eval()(batch(np.arange(min(2, len(X))))).shape[1]
        # Heads read normalised features: a body taken from the target emits activations on its
        # own scale, which would otherwise make the new head's learning rate arbitrary.
        body = nn.Sequential(body, nn.BatchNorm1d(width, affine=False)).to(self.device)
        heads = nn.ModuleDict({"attribute": nn.Linear(width, len(self.classes_))}).to(self.device)
        emotion_targets = None
        if self.aware:
            self.emotions_, emotion_targets = np.unique(np.asarray(emotion), return_inverse=True)
            heads["emotion"] = nn.Linear(width, len(self.emotions_)).to(self.device)
            self.architecture_ += " + emotion head (multi-task)"
        split = inner_split(np.asarray(groups), targets, self.validation, self.seed) if (
            groups is not None and self.validation > 0) else None
        train_rows, validation_rows = split if split is not None else (np.arange(len(targets)), None)
        loop = _Loop(self, body, heads, batch, targets, emotion_targets, train_rows, validation_rows)
        if self.body is not None:
            # Warm-up: the heads solved in closed form on the frozen body's features. That alone is the
            # frozen-body probe; fine-tuning starts from it, and keeps it unless held-out speakers prefer later epochs.
            loop.solve_heads()
        if not (self.body is not None and self.freeze_body):
            loop.run(self.epochs, body_rate=self.body_learning_rate if self.body is not None else self.learning_rate)
        loop.restore_best()
        self._settle_batch_norm(body, batch, train_rows, only_last=self.body is not None and self.freeze_body)
        self.validation_score_ = loop.best_score
        self.best_epoch_ = loop.best_epoch
        self.body_, self.head_ = body.eval(), heads["attribute"].eval()
        self.emotion_head_ = heads["emotion"] if self.aware else None
        return self

    def _settle_batch_norm(
        self, body: nn.Module, batch: Callable[[np.ndarray], torch.Tensor], rows: np.ndarray, *, only_last: bool = False
    ) -> None:
        """Batch-norm statistics recomputed over the training rows with the current weights.

        Running averages (momentum 0.1) lag far behind after the few hundred steps an attacker
        trains, and a lagging normaliser can push every test row to one class. The rows go in a
        seeded random order: stored corpora run speaker by speaker, and chunks of a few speakers
        would leave the variance between speakers (where the attribute lives) out of the
        average. ``only_last`` settles the normaliser added after the body and leaves a frozen
        target body exactly as the target has it.
        """
        norms = [m for m in body.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if only_last:
            norms = norms[-1:]
        if not norms:
            return
        momenta = [norm.momentum for norm in norms]
        body.eval()
        for norm in norms:
            norm.reset_running_stats()
            norm.momentum = None  # cumulative average over the pass below
            norm.train()
        shuffled = np.random.default_rng([self.seed, 0xB17]).permutation(rows)
        with torch.no_grad():
            for start in range(0, len(shuffled), 128):
                chunk = shuffled[start : start + 128]
                if len(chunk) > 1:
                    body(batch(chunk))
        for norm, momentum in zip(norms, momenta):
            norm.momentum = momentum
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
        """Trainable parameters: the heads alone when the body stays frozen."""
        check_is_fitted(self, "head_")
        frozen = self.body is not None and self.freeze_body
        heads = [self.head_, *([self.emotion_head_] if self.emotion_head_ is not None else [])]
        modules = heads if frozen else [self.body_, *heads]
        return int(sum(p.numel() for m in modules for p in m.parameters()))


class _Loop:
    """The mini-batch loop of one fit, and the best epoch seen on the validation speakers."""

    def __init__(self, attacker: NeuralAttacker, body: nn.Module, heads: nn.ModuleDict,
                 batch: Callable[[np.ndarray], torch.Tensor], targets: np.ndarray, emotion_targets: np.ndarray | None,
                 train_rows: np.ndarray, validation_rows: np.ndarray | None) -> None:
        self.attacker, self.body, self.heads, self.batch = attacker, body, heads, batch
        self.targets, self.emotion_targets = targets, emotion_targets
        self.train_rows, self.validation_rows = train_rows, validation_rows
        self.rng = np.random.default_rng(attacker.seed)
        weights = balanced_class_weights(torch.from_numpy(targets[train_rows]), len(attacker.classes_)).to(attacker.device)
        self.attribute_loss, self.emotion_loss = nn.CrossEntropyLoss(weight=weights), nn.CrossEntropyLoss()
        self.best_score: float | None = None
        self.best_epoch = 0
        self.epoch = 0
        self.best_state: dict[str, dict[str, torch.Tensor]] | None = None

    def run(self, epochs: int, *, body_rate: float) -> None:
        """``epochs`` passes; the body trains at ``body_rate``, the heads at the attacker's rate."""
        optimiser = torch.optim.Adam([{"params": list(self.heads.parameters()), "lr": self.attacker.learning_rate},
                                      {"params": list(self.body.parameters()), "lr": body_rate}], weight_decay=1e-4)
        run_epochs(self.body, optimiser, self._loss, self.train_rows, epochs=epochs, batch_size=self.attacker.batch_size,
                   shuffle=self.rng.permutation, min_batch_size=2, on_epoch=self._end_epoch)  # batch norm needs two rows

    def _loss(self, rows: np.ndarray, _epoch: int) -> torch.Tensor:
        rows = np.sort(rows)  # the order the batch reader returns them in
        device = self.attacker.device
        features = self.body(self.batch(rows))
        loss = self.attribute_loss(self.heads["attribute"](features), torch.from_numpy(self.targets[rows]).to(device))
        if self.emotion_targets is not None:
            emotion = torch.from_numpy(self.emotion_targets[rows]).to(device)
            loss = loss + self.emotion_loss(self.heads["emotion"](features), emotion)
        return loss

    def _end_epoch(self, _epoch: int) -> None:
        self.epoch += 1
        self._validate()

    def solve_heads(self, ridge: float = 1.0) -> None:
        """Each head set to the ridge solution on the frozen body's (batch-normalised) training features.

        Targets are -1/+1 per class and there is no bias: on centred features that ignores the
        class prior, as the linear probe does. Counts as epoch 0 for the choice of epochs.
        """
        self.attacker._settle_batch_norm(self.body, self.batch, self.train_rows, only_last=True)
        with torch.no_grad():
            features = torch.cat([self.body(self.batch(self.train_rows[start : start + 128]))
                                  for start in range(0, len(self.train_rows), 128)]).double()
            gram = features.T @ features + ridge * features.shape[1] * torch.eye(features.shape[1], dtype=torch.float64,
                                                                                  device=features.device)
            labels = {"attribute": self.targets, "emotion": self.emotion_targets}
            for name, module in self.heads.items():
                head = cast(nn.Linear, module)
                index = torch.from_numpy(labels[name][self.train_rows]).to(features.device)  # type: ignore[index]
                targets = -torch.ones(len(index), head.out_features, dtype=torch.float64, device=features.device)
                targets[torch.arange(len(index)), index] = 1.0
                head.weight.copy_(torch.linalg.solve(gram, features.T @ targets).T.float())
                head.bias.zero_()
        self._validate(only_last=True)

    def _validate(self, *, only_last: bool = False) -> None:
        if self.validation_rows is None:
            return
        self.attacker._settle_batch_norm(self.body, self.batch, self.train_rows, only_last=only_last)
        with torch.no_grad():
            scores = torch.cat([self.heads["attribute"](self.body(self.batch(self.validation_rows[start : start + 128])))
                                for start in range(0, len(self.validation_rows), 128)])
        truth = self.targets[self.validation_rows]
        score = float(balanced_accuracy(truth, scores.argmax(1).cpu().numpy(), len(self.attacker.classes_))[0])
        if self.best_score is None or score > self.best_score:
            self.best_score, self.best_epoch = score, self.epoch
            self.best_state = {"body": copy.deepcopy(self.body.state_dict()), "heads": copy.deepcopy(self.heads.state_dict())}

    def restore_best(self) -> None:
        if self.best_state is not None:
            self.body.load_state_dict(self.best_state["body"])
            self.heads.load_state_dict(self.best_state["heads"])
