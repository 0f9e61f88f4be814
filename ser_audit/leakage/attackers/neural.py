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
from typing import Callable, Literal, cast

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted
from torch import nn

from ser_audit.corpus.folds import inner_split
from ser_audit.embeddings.extract import pool
from ser_audit.leakage.attackers.design import designs
from ser_audit.leakage.attackers.interface import Attacker
from ser_audit.leakage.attackers.linear import LinearProbe
from ser_audit.leakage.statistics.inference import balanced_accuracy, balanced_accuracy_of
from ser_audit.models.loop import balanced_class_weights, run_epochs
from ser_audit.models.subnetwork import reinitialised

# Training rows up to this size (as float32) are held in memory for the whole fit.
IN_MEMORY_BYTES = 1 << 30
# Batch-norm statistics are settled on at most this many training rows: a mean and variance over 512
# shuffled rows are within a few percent of the full pass, at a bounded cost on large corpora.
SETTLE_ROWS = 512


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


def _perfect(score: float | None) -> bool:
    return score is not None and score >= 1.0 - 1e-12


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
            (copied, then trained for the attribute).
        body_description: How the body was obtained, for the report.
        body_learning_rate: Adam step size of ``body``. The heads first get a closed-form
            warm-up (ridge on the frozen body's features), so training starts from a head that
            already reads the body.
        body_start: ``target`` (the target's weights) or ``fresh`` (every module of the copy
            re-initialised with its own ``reset_parameters``).
        body_candidates: ``(start, body learning rate)`` pairs; when given, ``fit`` trains one
            attacker per pair and keeps the one that did best on the validation speakers
            (``choice_`` says which), so neither start nor rate is chosen on the test speakers.
        freeze_body: Stop after the warm-up: the target's frozen remaining layers with a new
            linear head (what survives to the last hidden layer, not the tap).
        readout_axis: With ``body_candidates``, also try a linear readout of the tap itself (the
            linear probe on its mean and std over this axis, ``None`` to flatten), chosen like the
            other candidates. A worst case must be at least what a linear reading of the tap gives,
            and some remaining layers (a global max pool) drop what the tap's statistics keep.
        patience: Stop after this many epochs without a better validation score.
        rows_per_epoch: At most this many training rows per epoch, a fresh seeded sample each epoch;
            the closed-form warm-up and the validation speakers' rows are sampled to the same size.
            ``None`` passes over every row. A bound makes a fit's cost stop growing with the corpus
            (a 5,000-utterance corpus then trains as many steps as a 1,000-utterance one, on more voices).
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
        body_start: str = "target",
        body_candidates: tuple[tuple[str, float], ...] = (),
        freeze_body: bool = False,
        readout_axis: int | None | Literal["off"] = "off",
        patience: int = 3,
        rows_per_epoch: int | None = None,
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
        self.body_start = body_start
        self.body_candidates = body_candidates
        self.freeze_body = freeze_body
        self.readout_axis = readout_axis
        self.patience = patience
        self.rows_per_epoch = rows_per_epoch
        self.validation = validation
        self.standardise = standardise
        self.seed = seed
        self.device = device

    @property
    def architecture(self) -> str:  # type: ignore[override]
        return getattr(self, "architecture_", self.design)

    @property
    def family(self) -> str:  # type: ignore[override]
        if self.body is not None:
            return "same-architecture"
        return designs()[self.design].family

    def _network(self, shape: tuple[int, ...]) -> tuple[nn.Module, str]:
        if self.body is not None:
            if self.freeze_body:
                return copy.deepcopy(self.body), f"frozen body, new linear head: {self.body_description}"
            start = "the target's weights" if self.body_start == "target" else "a fresh initialisation"
            body = copy.deepcopy(self.body) if self.body_start == "target" else reinitialised(self.body, self.seed)
            return body, (f"trained for the attribute from {start}, body at {self.body_learning_rate:g}: "
                          f"{self.body_description}")
        design = designs()[self.design]
        return design.build(shape, self.width), design.describe(shape, self.width)

    def _standardises(self) -> bool:
        # A body with the target's weights expects the target's activations; a fresh one is free to
        # read them standardised (a rescaling its first layer could absorb), which it learns from far faster.
        return self.body_start == "fresh" if self.body is not None else self.standardise

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

    def _layout(self) -> torch.memory_format:
        return torch.channels_last if getattr(self, "channels_last_", False) else torch.contiguous_format

    def _laid_out(self, batch: torch.Tensor) -> torch.Tensor:
        return batch.contiguous(memory_format=self._layout()) if batch.ndim == 4 else batch

    def _batch(self, X: np.ndarray, rows: np.ndarray) -> torch.Tensor:
        block = np.asarray(X[np.sort(rows)], dtype=np.float32)
        if self.standardised_:
            block = (block - self.mean_) / self.std_
        return self._laid_out(torch.from_numpy(block).to(self.device))

    def _reader(self, X: np.ndarray) -> Callable[[np.ndarray], torch.Tensor]:
        """Mini-batches of ``X`` (sorted rows): from one float32 copy when it is small enough, else
        read from the (memory-mapped) array batch by batch.

        Every epoch would otherwise convert the same float16 rows again, which costs about as much
        as the forward pass of a small attacker. When epochs sample far fewer rows than ``X`` holds
        (``rows_per_epoch``), most rows are read once or never, and the copy would cost more than it saves.
        """
        sampled = self.rows_per_epoch is not None and len(X) > 2 * self.rows_per_epoch
        if not len(X) or sampled or len(X) * int(np.prod(X.shape[1:])) * 4 > IN_MEMORY_BYTES:
            return lambda rows: self._batch(X, rows)
        whole = torch.empty((len(X), *X.shape[1:]), dtype=torch.float32, device=self.device)
        for start in range(0, len(X), 256):
            whole[start : start + 256] = self._batch(X, np.arange(start, min(start + 256, len(X))))
        return lambda rows: self._laid_out(whole[torch.from_numpy(np.sort(rows)).to(whole.device)])

    def fit(
        self, X: np.ndarray, y: np.ndarray, emotion: np.ndarray | None = None, groups: np.ndarray | None = None
    ) -> "NeuralAttacker":
        if self.aware and emotion is None:
            raise ValueError("an application-aware attacker needs emotion labels")
        if self.body is not None and self.body_candidates and not self.freeze_body:
            return self._fit_candidates(X, y, emotion, groups)
        torch.manual_seed(self.seed)
        self.classes_, targets = np.unique(np.asarray(y), return_inverse=True)
        self.standardised_ = self._standardises()
        if self.standardised_:
            self.mean_, self.std_ = self._statistics(X)
        body, self.architecture_ = self._network(tuple(X.shape[1:]))
        # Maps travel channels-last, the layout oneDNN's and cuDNN's convolutions are fastest on (a training
        # step of the same-architecture body on zoo:cnn4's pool3 map: 14 ms instead of 18 on one CPU thread),
        # unless the body cannot take it: a target's own forward may .view() an activation it expects contiguous.
        self.channels_last_ = X.ndim == 4
        batch = self._reader(X)
        first = np.arange(min(2, len(X)))
        with torch.no_grad():
            try:
                width = body.to(self.device).to(memory_format=self._layout()).eval()(batch(first)).shape[1]
            except RuntimeError:
                if not self.channels_last_:
                    raise
                self.channels_last_ = False
                width = body.to(memory_format=torch.contiguous_format).eval()(batch(first)).shape[1]
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
        if validation_rows is not None:
            validation_rows = self._bounded(validation_rows, 0xFA1)
        loop = _Loop(self, body, heads, batch, targets, emotion_targets, train_rows, validation_rows)
        if self.body is not None:
            # Warm-up: the heads solved in closed form on the frozen body's features. That alone is the
            # frozen-body probe; fine-tuning starts from it, and keeps it unless held-out speakers prefer later epochs.
            loop.solve_heads()
        if not (self.body is not None and self.freeze_body):
            loop.run(self.epochs, body_rate=self.body_learning_rate if self.body is not None else self.learning_rate)
            loop.restore_best()
            self._settle_batch_norm(body, batch, train_rows)
        self.validation_score_ = loop.best_score
        self.best_epoch_ = loop.best_epoch
        self.body_, self.head_ = body.eval(), heads["attribute"].eval()
        self.emotion_head_ = heads["emotion"] if self.aware else None
        return self

    def _fit_candidates(
        self, X: np.ndarray, y: np.ndarray, emotion: np.ndarray | None, groups: np.ndarray | None
    ) -> "NeuralAttacker":
        """Nested choice: one fit per ``body_candidates`` pair on the inner training speakers, each keeping its
        best epoch on the same held-out speakers (``inner_split`` is seeded); the best pair (the first on a
        tie) is then refitted on every training row for the epochs it chose. With a handful of speakers the
        two held out are a quarter of the voices a gender attacker can learn from, so the refit matters."""
        fitted: list[NeuralAttacker] = []
        for start, rate in self.body_candidates:
            fitted.append(copy.copy(self).set_params(body_candidates=(), body_start=start, body_learning_rate=rate).fit(
                X, y, emotion=emotion, groups=groups))
            if _perfect(fitted[-1].validation_score_):
                break  # a later candidate could only tie, and a tie goes to the earlier one
        best = max(fitted, key=lambda f: -1.0 if f.validation_score_ is None else f.validation_score_)
        self.candidate_scores_ = {f"{f.body_start}@{f.body_learning_rate:g}": f.validation_score_ for f in fitted}
        readout = self._readout(X, y, groups) if self.readout_axis != "off" else None
        if readout is not None:
            self.candidate_scores_["linear readout"] = readout[0]
        if readout is not None and (best.validation_score_ is None or readout[0] > best.validation_score_):
            self.readout_ = readout[1]
            self.classes_ = np.unique(np.asarray(y))
            self.body_, self.head_, self.emotion_head_ = best.body_, best.head_, best.emotion_head_
            self.validation_score_, self.best_epoch_ = readout[0], 0
            self.choice_ = "linear readout of the tap's mean and std"
            return self
        final = best if best.validation_score_ is None else copy.copy(best).set_params(
            epochs=max(1, best.best_epoch_)).fit(X, y, emotion=emotion)
        self.__dict__.update({k: v for k, v in vars(final).items() if k.endswith("_") and not k.startswith("_")})
        self.validation_score_, self.best_epoch_ = best.validation_score_, best.best_epoch_
        self.choice_ = f"{best.body_start} start, body at {best.body_learning_rate:g}, {max(1, best.best_epoch_)} epochs"
        return self

    def _pooled(self, X: np.ndarray) -> np.ndarray:
        axis = self.readout_axis if self.readout_axis != "off" else None
        return np.concatenate([pool(np.asarray(X[np.arange(a, min(a + 256, len(X)))]), axis)[0]
                               for a in range(0, len(X), 256)])

    def _readout(self, X: np.ndarray, y: np.ndarray, groups: np.ndarray | None) -> tuple[float, LinearProbe] | None:
        """The linear probe on the tap's pooled statistics, scored on the same held-out training speakers as the
        body candidates, then refitted on every training row."""
        if groups is None:
            return None
        labels = np.asarray(y)
        split = inner_split(np.asarray(groups), np.unique(labels, return_inverse=True)[1], self.validation, self.seed)
        if split is None:
            return None
        features = self._pooled(X)
        train, held_out = split
        predicted = LinearProbe().fit(features[train], labels[train]).predict(features[held_out])
        score = balanced_accuracy_of(labels[held_out], predicted, np.unique(labels))
        return score, LinearProbe().fit(features, labels)

    def _bounded(self, rows: np.ndarray, stream: int, epoch: int = 0) -> np.ndarray:
        """``rows``, or a seeded sample of ``rows_per_epoch`` of them (sorted) when there are more."""
        if self.rows_per_epoch is None or len(rows) <= self.rows_per_epoch:
            return rows
        rng = np.random.default_rng([self.seed, stream, epoch])
        return np.sort(rng.choice(rows, self.rows_per_epoch, replace=False))

    def _settle_batch_norm(self, body: nn.Module, batch: Callable[[np.ndarray], torch.Tensor], rows: np.ndarray) -> None:
        """Batch-norm statistics recomputed over (at most ``SETTLE_ROWS``) training rows with the current weights.

        Running averages (momentum 0.1) lag far behind after the few hundred steps an attacker
        trains, and a lagging normaliser can push every test row to one class. The rows are a
        seeded random sample: stored corpora run speaker by speaker, and chunks of a few speakers
        would leave the variance between speakers (where the attribute lives) out of the
        average. (A frozen body's own normaliser is set by ``_Loop.solve_heads`` and left as it is.)
        """
        norms = [m for m in body.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if not norms:
            return
        momenta = [norm.momentum for norm in norms]
        body.eval()
        for norm in norms:
            norm.reset_running_stats()
            norm.momentum = None  # cumulative average over the pass below
            norm.train()
        shuffled = np.random.default_rng([self.seed, 0xB17]).permutation(rows)[:SETTLE_ROWS]
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
        if getattr(self, "readout_", None) is not None:
            chosen = self.readout_.predict(self._pooled(X))
            return (chosen[:, None] == self.classes_[None, :]).astype(np.float32)
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
        """Up to ``epochs`` passes, fewer when ``patience`` epochs in a row bring no better validation score;
        the body trains at ``body_rate``, the heads at the attacker's rate.

        Each epoch's batch-norm statistics are the cumulative average of that epoch's own mini-batches
        (shuffled, so they span speakers): validation then needs no extra pass over the training rows.
        """
        optimiser = torch.optim.Adam([{"params": list(self.heads.parameters()), "lr": self.attacker.learning_rate},
                                      {"params": list(self.body.parameters()), "lr": body_rate}], weight_decay=1e-4)
        norms = [m for m in self.body.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        momenta = [norm.momentum for norm in norms]
        for _ in range(epochs):
            if self.validation_rows is not None and (self.epoch - self.best_epoch >= self.attacker.patience
                                                     or _perfect(self.best_score)):
                break  # only a strictly better score replaces the best epoch, and none beats a perfect one
            for norm in norms:
                norm.reset_running_stats()
                norm.momentum = None
            rows = self.attacker._bounded(self.train_rows, 0xE90C, self.epoch)
            run_epochs(self.body, optimiser, self._loss, rows, epochs=1, batch_size=self.attacker.batch_size,
                       shuffle=self.rng.permutation, min_batch_size=2)  # batch norm needs two rows
            self.epoch += 1
            self._validate()
        for norm, momentum in zip(norms, momenta):
            norm.momentum = momentum

    def _loss(self, rows: np.ndarray, _epoch: int) -> torch.Tensor:
        rows = np.sort(rows)  # the order the batch reader returns them in
        device = self.attacker.device
        features = self.body(self.batch(rows))
        loss = self.attribute_loss(self.heads["attribute"](features), torch.from_numpy(self.targets[rows]).to(device))
        if self.emotion_targets is not None:
            emotion = torch.from_numpy(self.emotion_targets[rows]).to(device)
            loss = loss + self.emotion_loss(self.heads["emotion"](features), emotion)
        return loss

    def solve_heads(self, ridge: float = 1.0) -> None:
        """Each head set to the ridge solution on the frozen body's (batch-normalised) training features.

        Targets are -1/+1 per class and there is no bias: on centred features that ignores the
        class prior, as the linear probe does. Counts as epoch 0 for the choice of epochs. One pass
        over the training rows gives both the normaliser's statistics and the features.
        """
        inner, norm = cast(nn.Sequential, self.body)
        norm = cast(nn.BatchNorm1d, norm)
        inner.eval()
        rows = self.attacker._bounded(self.train_rows, 0x50E)
        with torch.no_grad():
            raw = torch.cat([inner(self.batch(rows[start : start + 128])) for start in range(0, len(rows), 128)]).double()
            mean, variance = raw.mean(0), raw.var(0, unbiased=len(raw) > 1)
            norm.reset_running_stats()
            norm.running_mean.copy_(mean.float())  # type: ignore[union-attr]
            norm.running_var.copy_(variance.float())  # type: ignore[union-attr]
            features = (raw - mean) / torch.sqrt(variance + norm.eps)
            gram = features.T @ features + ridge * features.shape[1] * torch.eye(features.shape[1], dtype=torch.float64,
                                                                                  device=features.device)
            labels = {"attribute": self.targets, "emotion": self.emotion_targets}
            for name, module in self.heads.items():
                head = cast(nn.Linear, module)
                index = torch.from_numpy(labels[name][rows]).to(features.device)  # type: ignore[index]
                targets = -torch.ones(len(index), head.out_features, dtype=torch.float64, device=features.device)
                targets[torch.arange(len(index)), index] = 1.0
                head.weight.copy_(torch.linalg.solve(gram, features.T @ targets).T.float())
                head.bias.zero_()
        self._validate()

    def _validate(self) -> None:
        """Balanced accuracy on the validation speakers, with the batch-norm statistics as they stand."""
        if self.validation_rows is None:
            return
        self.body.eval()
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
