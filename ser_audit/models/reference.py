"""What a reference-model plugin declares: the model, its paper, and its training recipe.

A recipe is one or more stages run in order on the same module, each on its own corpus and
target, e.g. P1's speaker-identification pretraining followed by adapter training on emotion
with the 3x3 filters frozen::

    SPEAKER_ID = Stage(corpus="ravdess-like", target="speaker", epochs=30, optimiser="sgd",
                       momentum=0.9, nesterov=True, learning_rate=0.05, weight_decay=1e-4,
                       lr_milestones=(20,))
    ADAPT = Stage(corpus="iemocap-like", target="emotion", epochs=30, optimiser="sgd", momentum=0.9,
                  nesterov=True, learning_rate=0.01, weight_decay=0.005, lr_milestones=(10, 20),
                  groups=(ParameterGroup(patterns=("*.conv3x3.weight",), frozen=True),))
    ReferenceModel(..., training=(SPEAKER_ID, ADAPT))

The last stage trains on emotion; its corpus is the model's training corpus, whose last session
is held out for the reported UAR and never trained on by any stage on that corpus.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Literal

from torch import nn

from ser_audit.errors import ConfigError
from ser_audit.frontend.spec import FrontEndSpec

DEFAULT_CORPUS = "iemocap-like"


@dataclass(frozen=True)
class ParameterGroup:
    """Parameters chosen by name, frozen for a stage or trained at their own rate.

    Attributes:
        patterns: ``fnmatch`` patterns over dotted parameter names (``"block1.*"``,
            ``"*.adapter.*"``); a parameter joins the first group with a matching pattern.
            Every pattern must match at least one parameter.
        frozen: Left out of the optimiser and without gradients for the stage.
        learning_rate: The group's rate; the stage's when None.
        weight_decay: The group's weight decay; the stage's when None.
    """

    patterns: tuple[str, ...]
    frozen: bool = False
    learning_rate: float | None = None
    weight_decay: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.patterns, str) or not self.patterns:
            raise ConfigError(f"ParameterGroup.patterns must be a non-empty tuple of name patterns (got {self.patterns!r})")


@dataclass(frozen=True)
class Stage:
    """One training stage (scaled down from the paper to run on a CPU in minutes).

    Attributes:
        corpus: Corpus the stage trains on: a name ``--corpus`` accepts (a synthetic preset).
        target: ``emotion`` (the corpus's emotion labels), ``speaker`` (speaker identification
            over the stage's training speakers) or ``transcript`` (the corpus's transcripts, with
            CTC on the module's ``transcribe``; see ``models.transcription``).
        epochs: Passes over the stage's training utterances.
        batch_size: Mini-batch size.
        optimiser: ``adam`` or ``sgd``.
        learning_rate: Rate of every parameter not in a group with its own.
        weight_decay: L2 penalty (the optimiser's ``weight_decay``).
        momentum: SGD momentum.
        nesterov: SGD with Nesterov momentum (needs ``momentum > 0``).
        lr_milestones: Epochs (counted from 0) from which the rates are multiplied by
            ``lr_decay`` once more, e.g. ``(20,)`` is P1's "divided by 10 at epoch 21".
        lr_decay: Factor applied at each milestone.
        clip_grad_norm: Largest global gradient norm before each step (P3 clips at 15); None
            for no clipping.
        class_weighted: Cross-entropy weighted by inverse class frequency over the stage's
            training utterances (P4; the embedded corpus is imbalanced like IEMOCAP).
        groups: Frozen parameters and per-group rates, by parameter-name patterns.
        alphabet: Transcript stages: the symbols ``transcribe`` scores, in output order after
            the CTC blank (one character each; a space is a symbol too, the word boundary).
        shares: Transcript stages: patterns of the parameters the stage trains for others too;
            they are cached and loaded by any recipe that runs the same stage on the same data
            from the same initial values, instead of training again.
        random_crop_s: Train on a random piece of this many seconds of each utterance, drawn anew
            each time it is used (P4: 4.5 s on IEMOCAP); the model then needs a variable-length
            front-end (``duration_s`` None) and is tested on whole utterances.
        random_reference: Feed each further input (P4's neutral reference) a random neutral
            utterance of the same speaker, never the utterance itself, drawn anew each time;
            without it, and always outside training, the fixed choice of ``models.sampling``.
    """

    corpus: str = DEFAULT_CORPUS
    target: Literal["emotion", "speaker", "transcript"] = "emotion"
    epochs: int = 30
    batch_size: int = 32
    optimiser: Literal["adam", "sgd"] = "adam"
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.0
    nesterov: bool = False
    lr_milestones: tuple[int, ...] = ()
    lr_decay: float = 0.1
    clip_grad_norm: float | None = None
    class_weighted: bool = True
    groups: tuple[ParameterGroup, ...] = ()
    alphabet: str = ""
    shares: tuple[str, ...] = ()
    random_crop_s: float | None = None
    random_reference: bool = False

    def __post_init__(self) -> None:
        if self.target not in ("emotion", "speaker", "transcript"):
            raise ConfigError(f"Stage.target {self.target!r}: use emotion, speaker or transcript")
        if (self.target == "transcript") != bool(self.alphabet) or len(set(self.alphabet)) != len(self.alphabet):
            raise ConfigError("Stage.alphabet: a transcript stage needs one, of distinct symbols, and only it has one")
        if self.shares and (self.target != "transcript" or isinstance(self.shares, str)):
            raise ConfigError("Stage.shares: a tuple of parameter patterns, on transcript stages only")
        if self.optimiser not in ("adam", "sgd"):
            raise ConfigError(f"Stage.optimiser {self.optimiser!r}: use adam or sgd")
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError(f"Stage.epochs and Stage.batch_size must be at least 1 (got {self.epochs}, {self.batch_size})")
        if not self.learning_rate > 0 or self.weight_decay < 0 or self.momentum < 0:
            raise ConfigError("Stage.learning_rate must be positive, weight_decay and momentum non-negative")
        if self.nesterov and not (self.optimiser == "sgd" and self.momentum > 0):
            raise ConfigError("Stage.nesterov needs optimiser='sgd' and momentum > 0")
        if self.clip_grad_norm is not None and not self.clip_grad_norm > 0:
            raise ConfigError(f"Stage.clip_grad_norm must be positive or None (got {self.clip_grad_norm})")
        if self.random_crop_s is not None and not self.random_crop_s > 0:
            raise ConfigError(f"Stage.random_crop_s must be positive or None (got {self.random_crop_s})")

    def rate_factor(self, epoch: int) -> float:
        """Multiplier of every rate in ``epoch`` under the step schedule."""
        return self.lr_decay ** sum(epoch >= milestone for milestone in self.lr_milestones)


# The one-stage recipe's earlier name: ``Training(epochs=25, learning_rate=1e-3)``.
Training = Stage


@dataclass(frozen=True)
class ReferenceModel:
    """A bundled audit target.

    Attributes:
        name: Name after ``zoo:``.
        paper: Which paper it comes from.
        description: One line for ``zoo list``.
        build: ``build(n_classes=..., **config)`` returns a fresh module. Its ``forward`` takes
            the primary input, then one tensor per ``frontend.extra_inputs`` entry, in order.
        config: Keyword arguments for ``build`` (width factor and the like).
        frontend: Front-end spec; the emotion list is filled in from the training corpus.
        training: One stage, or the stages in order (the last trains on emotion). Between stages
            whose classes differ the module is rebuilt for the new classes and every parameter
            and buffer whose shape does not depend on the number of classes is carried over.
        version: Bump when the architecture or recipe changes, so caches are rebuilt.
    """

    name: str
    paper: str
    description: str
    build: Callable[..., nn.Module]
    frontend: FrontEndSpec
    config: dict[str, Any] = field(default_factory=dict)
    training: Stage | tuple[Stage, ...] = Stage()
    version: int = 1

    def __post_init__(self) -> None:
        if not self.stages:
            raise ConfigError(f"zoo:{self.name}: the training recipe has no stage")
        if self.stages[-1].target != "emotion":
            raise ConfigError(f"zoo:{self.name}: the last training stage must target emotion, not {self.stages[-1].target}")

    @property
    def stages(self) -> tuple[Stage, ...]:
        """The recipe as a tuple of stages."""
        return (self.training,) if isinstance(self.training, Stage) else tuple(self.training)
