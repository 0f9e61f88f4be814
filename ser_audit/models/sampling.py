"""Inputs drawn afresh for every training example: P4's random crops and random neutral reference.

P4 (Triantafyllopoulos et al., ICME 2021) trains on random crops of each utterance (4.5 s on
IEMOCAP) and tests on the whole utterance, and conditions the network on a neutral utterance of
the same speaker. A stage asks for either with ``Stage.random_crop_s`` and
``Stage.random_reference``; the model then trains from :class:`CorpusAudio`, the corpus's
waveforms at full length, and every mini-batch is cut, referenced and analysed anew.

The reference is never the utterance itself. Outside training the choice is fixed and
documented (:data:`REFERENCE_CHOICE`): candidate ``choice`` (default 0) of the speaker's other
neutral utterances in corpus order, so an audit, a robustness probe and the held-out UAR all
feed the same reference, and P4's neutral-sample ablation varies ``choice``.

Example:
    >>> import numpy as np
    >>> random_crop(np.arange(3.0), 5, np.random.default_rng(0)).tolist()  # repeated, then cut
    [1.0, 2.0, 0.0, 1.0, 2.0]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn

from ser_audit.corpus.interface import Corpus
from ser_audit.errors import CorpusError
from ser_audit.models.loop import BatchLoss

REFERENCE_CHOICE = (
    "neutral reference = candidate {choice} (0-based) of the speaker's neutral utterances other than the "
    "utterance itself, in corpus order (wrapping round when the speaker has fewer; where the speaker has no other "
    "neutral utterance, its other utterances of any emotion are the candidates)"
)


def reference_candidates(corpus: Corpus) -> list[list[int]]:
    """For each utterance, the rows of its speaker's neutral utterances other than itself, in corpus order;
    where there is none (a corpus with one neutral take per speaker, or none), the speaker's other utterances.

    Raises:
        CorpusError: An utterance's speaker has no other utterance at all.
    """
    neutral: dict[str, list[int]] = {}
    spoken: dict[str, list[int]] = {}
    for index, utterance in enumerate(corpus):
        spoken.setdefault(utterance.speaker, []).append(index)
        if utterance.emotion == "neutral":
            neutral.setdefault(utterance.speaker, []).append(index)
    candidates = []
    for index, utterance in enumerate(corpus):
        own = [k for k in neutral.get(utterance.speaker, []) if k != index]
        own = own or [k for k in spoken[utterance.speaker] if k != index]
        if not own:
            raise CorpusError(
                f"the model needs a reference utterance of speaker {utterance.speaker!r} other than "
                f"{utterance.id!r}, but corpus {corpus.name!r} has no other utterance of that speaker"
            )
        candidates.append(own)
    return candidates


def fallback_count(corpus: Corpus) -> int:
    """Utterances whose speaker has no neutral utterance other than them (their reference is not neutral)."""
    neutral: dict[str, int] = {}
    for utterance in corpus:
        neutral[utterance.speaker] = neutral.get(utterance.speaker, 0) + (utterance.emotion == "neutral")
    return sum(neutral[u.speaker] - (u.emotion == "neutral") == 0 for u in corpus)


def reference_rows(corpus: Corpus, *, choice: int = 0) -> np.ndarray:
    """The fixed reference of every utterance (:data:`REFERENCE_CHOICE`): row indices into ``corpus``."""
    if choice < 0:
        raise ValueError(f"reference choice must be non-negative (got {choice})")
    return np.array([own[choice % len(own)] for own in reference_candidates(corpus)], dtype=np.int64)


def describe_choice(choice: int = 0) -> str:
    return REFERENCE_CHOICE.format(choice=choice)


def random_crop(signal: np.ndarray, samples: int, rng: np.random.Generator) -> np.ndarray:
    """A random ``samples``-long piece; a shorter signal is repeated (wrapped round) to that length
    first, so no crop holds digital silence that the per-segment normalisation would blow up."""
    if len(signal) < samples:
        signal = np.tile(signal, -(-samples // len(signal)))
    start = int(rng.integers(0, len(signal) - samples + 1))
    return signal[start : start + samples]


@dataclass
class CorpusAudio:
    """A corpus's waveforms at full length with each utterance's reference candidates; the source
    of mini-batches for stages that crop or draw references at random.

    Attributes:
        waveforms: One signal per utterance at the front-end's rate, whole.
        candidates: :func:`reference_candidates` (empty when the model has no further input).
        n_extra: How many further inputs the model takes (each fed the same reference).
        frontend: Waveform to model input, normalisation included.
        sample_rate: The waveforms' rate.
        seed: Seeds the random crops and references.
        device: Where each batch of waveforms goes to be analysed (``frontend`` must be there too), and
            so where the inputs are made.
    """

    waveforms: list[np.ndarray]
    candidates: list[list[int]]
    n_extra: int
    frontend: nn.Module
    sample_rate: int = 16_000
    seed: int = 0
    device: str = "cpu"

    def batch(self, rows: Sequence[int], *, crop_samples: int | None = None, random_reference: bool = False,
              rng: np.random.Generator | None = None, choice: int = 0) -> list[torch.Tensor]:
        """The model's inputs for ``rows``: random crops of ``crop_samples`` (whole signals when None,
        which must then be of one length) and, per further input, a random or the fixed reference."""
        if (crop_samples is not None or random_reference) and rng is None:
            raise ValueError("random crops and references need a generator")

        def cut(row: int) -> np.ndarray:
            signal = self.waveforms[row]
            return signal if crop_samples is None or rng is None else random_crop(signal, crop_samples, rng)

        def analyse(signals: list[np.ndarray]) -> torch.Tensor:
            return self.frontend(torch.from_numpy(np.stack(signals)).to(self.device))

        primary = analyse([cut(int(row)) for row in rows])
        if not self.n_extra:
            return [primary]
        chosen = [
            own[int(rng.integers(len(own)))] if random_reference and rng is not None else own[choice % len(own)]
            for own in (self.candidates[int(row)] for row in rows)
        ]
        reference = analyse([cut(row) for row in chosen])
        return [primary, *([reference] * self.n_extra)]


def sampled_loss(
    module: nn.Module, audio: CorpusAudio, targets: torch.Tensor, *, crop_samples: int | None, random_reference: bool,
    seed: int, class_weights: torch.Tensor | None = None,
) -> BatchLoss:
    """Cross-entropy on mini-batches cut and referenced anew from ``audio`` (draws from a private
    generator seeded with ``seed``, so the loop's one-permutation-per-epoch contract holds)."""
    criterion = nn.CrossEntropyLoss(weight=class_weights)
    rng = np.random.default_rng(seed)

    def loss(rows: torch.Tensor, _epoch: int) -> torch.Tensor:
        inputs = audio.batch(rows.tolist(), crop_samples=crop_samples, random_reference=random_reference, rng=rng)
        return criterion(module(*inputs), targets[rows])

    return loss


def predict_whole(module: nn.Module, audio: CorpusAudio, rows: Sequence[int], *, choice: int = 0) -> np.ndarray:
    """Predicted classes of whole utterances, one at a time (lengths differ), each with its fixed reference."""
    with torch.no_grad():
        return np.array([int(module(*audio.batch([row], choice=choice)).argmax(1)) for row in rows], dtype=np.int64)
