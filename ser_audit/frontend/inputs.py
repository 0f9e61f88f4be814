"""Corpus → model inputs, with P4's reference: the one pipeline every stage feeds a model through.

Extraction, the robustness probes, hardening, reference-model training and ``ser-audit protect``
all turn rows of a corpus into what a model is fed: the front-end's features of each utterance
(cut or padded to the spec's ``duration_s``; whole for a variable-length model), then, for each
further input read from the corpus (``FrontEndSpec.reference_inputs``, P4's conditioning input),
the features of a neutral utterance of the same speaker. Auxiliary inputs (zeros, a constant,
lengths, a mask) are not made here: the model makes them from the primary batch.

- :class:`EvaluationInputs`: whole utterances, each with its fixed reference, in batches of one
  length (:func:`equal_length_runs`): a variable-length model sees each utterance whole and
  unpadded, so its outputs never depend on its neighbours.
- :class:`TrainingInputs`: a corpus's rows made ready once; :meth:`TrainingInputs.sampler` gives
  ``inputs(rows)`` per mini-batch, either the made inputs or, as P4 (Triantafyllopoulos et al.,
  ICME 2021) trains, random crops of each utterance (4.5 s on IEMOCAP; tests run on the whole
  utterance) and a random neutral reference, cut and analysed anew per mini-batch from a seeded
  generator (:class:`CorpusAudio`).

The reference is never the utterance itself. Outside training the choice is fixed and documented
(:data:`REFERENCE_CHOICE`): candidate ``choice`` (default 0) of the speaker's other neutral
utterances in corpus order, so an audit, a robustness probe and the held-out UAR all feed the same
reference, and P4's neutral-sample ablation varies ``choice``.

Inputs are made on the CPU (except that :meth:`TrainingInputs.normalise` moves them, or the
analysis of kept audio, to a device); callers take each batch where their model is.

Example:
    >>> import numpy as np
    >>> random_crop(np.arange(3.0), 5, np.random.default_rng(0)).tolist()  # repeated, then cut
    [1.0, 2.0, 0.0, 1.0, 2.0]
    >>> signals = [np.zeros(4), np.zeros(4), np.zeros(4), np.zeros(6)]
    >>> [list(run) for run in equal_length_runs(signals, batch_size=2)]  # one length per batch, at most 2
    [[0, 1], [2], [3]]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from ser_audit.corpus.audio import read_audio
from ser_audit.corpus.interface import Corpus, Utterance
from ser_audit.errors import CorpusError
from ser_audit.frontend.features import FrontEnd, fit_length
from ser_audit.frontend.spec import FrontEndSpec
from ser_audit.progress import NULL_OBSERVER, ProgressObserver

REFERENCE_CHOICE = (
    "neutral reference = candidate {choice} (0-based) of the speaker's neutral utterances other than the "
    "utterance itself, in corpus order (wrapping round when the speaker has fewer; where the speaker has no other "
    "neutral utterance, its other utterances of any emotion are the candidates)"
)
FINE_TUNING_CROP_S = 2.0  # seconds: a variable-length model being fine-tuned trains on random crops this long

Sampler = Callable[[torch.Tensor], list[torch.Tensor]]


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


def reference_utterances(corpus: Corpus, *, choice: int = 0) -> list[Utterance]:
    """For each utterance, its fixed reference (:func:`reference_rows` with ``choice``)."""
    return [corpus.utterances[row] for row in reference_rows(corpus, choice=choice)]


def describe_choice(choice: int = 0) -> str:
    return REFERENCE_CHOICE.format(choice=choice)


def random_crop(signal: np.ndarray, samples: int, rng: np.random.Generator) -> np.ndarray:
    """A random ``samples``-long piece; a shorter signal is repeated (wrapped round) to that length
    first, so no crop holds digital silence that the per-segment normalisation would blow up."""
    if len(signal) < samples:
        signal = np.tile(signal, -(-samples // len(signal)))
    start = int(rng.integers(0, len(signal) - samples + 1))
    return signal[start : start + samples]


def waveforms(
    utterances: Iterable[Utterance], spec: FrontEndSpec, observer: ProgressObserver = NULL_OBSERVER, *, label: str = "audio"
) -> list[np.ndarray]:
    """Every utterance read at the spec's rate and cut or padded to its length (whole when it has none)."""
    items = list(utterances)
    out = []
    with observer.task(f"reading {label}", total=len(items)) as task:
        for utterance in items:
            out.append(fit_length(read_audio(utterance.path, spec.sample_rate), spec.num_samples, spec.crop))
            task.advance()
    return out


def equal_length_runs(
    signals: Sequence[np.ndarray], references: Sequence[np.ndarray] | None = None, *, batch_size: int | None = None
) -> list[range]:
    """Consecutive stretches of equal-length inputs (and references), each cut into pieces of at most
    ``batch_size``: a batch never pads, so an utterance's outputs do not depend on its neighbours."""
    def length(i: int) -> tuple[int, int]:
        return len(signals[i]), len(references[i]) if references is not None else 0

    runs: list[range] = []
    start = 0
    for i in range(1, len(signals) + 1):
        if i == len(signals) or length(i) != length(start):
            step = batch_size or i - start
            runs += [range(k, min(k + step, i)) for k in range(start, i, step)]
            start = i
    return runs


@dataclass(frozen=True)
class InputBatch:
    """Utterances of one length, fed together.

    Attributes:
        rows: Their positions among the rows asked for.
        audio: Their waveforms, ``[batch, samples]``.
        reference_audio: Their fixed references' waveforms (``None`` for a model without reference inputs).
        fed: The inputs read from the corpus, in model order: the primary features, then the reference's
            features once per reference input (one tensor, repeated).
    """

    rows: np.ndarray
    audio: torch.Tensor
    reference_audio: torch.Tensor | None
    fed: list[torch.Tensor]


class EvaluationInputs:
    """A corpus's utterances as a model sees them outside training: whole (cut or padded for a fixed-length
    spec), each with its fixed reference (:func:`reference_rows`, choice ``reference_choice``), in batches of one length.

    Attributes:
        frontend: Waveform to primary input (and reference input), as the spec says.
        references: The reference row of each corpus row (``None`` for a model without reference inputs).
        reference: :data:`REFERENCE_CHOICE` for the choice fed (``None`` without reference inputs), for reports.
    """

    def __init__(self, spec: FrontEndSpec, corpus: Corpus, *, reference_choice: int = 0) -> None:
        self.spec, self.corpus = spec, corpus
        self.frontend = FrontEnd(spec)
        self.references = reference_rows(corpus, choice=reference_choice) if spec.reference_inputs else None
        self.reference = describe_choice(reference_choice) if spec.reference_inputs else None

    def batches(self, rows: Iterable[int], *, batch_size: int | None = None, observer: ProgressObserver = NULL_OBSERVER,
                label: str = "audio") -> Iterator[InputBatch]:
        """The corpus rows ``rows`` in order, in runs of one length (and one reference length) cut into batches
        of at most ``batch_size``. Every waveform is read first (progress task ``reading {label}``); each
        batch is analysed when it is taken."""
        utterances = self.corpus.utterances
        rows = list(rows)
        signals = waveforms([utterances[row] for row in rows], self.spec, observer, label=label)
        references = None if self.references is None else waveforms(
            [utterances[self.references[row]] for row in rows], self.spec)
        for run in equal_length_runs(signals, references, batch_size=batch_size):
            audio = torch.from_numpy(np.stack([signals[i] for i in run]))
            reference_audio = None if references is None else torch.from_numpy(np.stack([references[i] for i in run]))
            with torch.no_grad():
                fed = [self.frontend(audio)]
                if reference_audio is not None:
                    fed += [self.frontend(reference_audio)] * len(self.spec.reference_inputs)
            yield InputBatch(np.array(run), audio, reference_audio, fed)


@dataclass
class CorpusAudio:
    """A corpus's waveforms at full length with each utterance's reference candidates; the source
    of mini-batches that crop or draw references at random.

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


class TrainingInputs:
    """Rows of a corpus made ready for training once; :meth:`sampler` gives ``inputs(rows)`` per mini-batch.

    With ``keep_audio`` the whole waveforms are kept (``audio``, a :class:`CorpusAudio`) and each mini-batch is
    cut, referenced and analysed anew; otherwise (a fixed-length spec) every row's inputs are made now
    (``tensors``: its features, then its fixed reference's once per reference input; :class:`EvaluationInputs`),
    and a mini-batch indexes them.

    Args:
        spec: The front-end (its normalisation as made; :meth:`normalise` changes it afterwards).
        corpus: Where the rows and their references come from.
        rows: The corpus rows trained on; a sampler's rows are positions among them. Default: all.
        keep_audio: Keep whole waveforms, for random crops or references (needed by a variable-length spec).
        observer: Reports reading the audio (progress task ``reading {label}``).
    """

    def __init__(self, spec: FrontEndSpec, corpus: Corpus, *, rows: Sequence[int] | np.ndarray | None = None,
                 keep_audio: bool = False, observer: ProgressObserver = NULL_OBSERVER, label: str = "training audio") -> None:
        self.rows = np.arange(len(corpus)) if rows is None else np.asarray(rows, dtype=np.int64)
        self.audio: CorpusAudio | None = None
        self.tensors: list[torch.Tensor] = []
        if keep_audio:
            self.audio = CorpusAudio(waveforms(corpus, spec, observer, label=label),
                                     reference_candidates(corpus) if spec.reference_inputs else [],
                                     len(spec.reference_inputs), FrontEnd(spec), spec.sample_rate)
            return
        if spec.duration_s is None:
            raise ValueError("a variable-length front-end trains from whole waveforms (keep_audio=True)")
        parts = [batch.fed[:2] for batch in EvaluationInputs(spec, corpus).batches(
            self.rows, batch_size=32, observer=observer, label=label)]
        made = [torch.cat(column) for column in zip(*parts)]
        self.tensors = made[:1] + made[1:] * len(spec.reference_inputs)

    @classmethod
    def fine_tuning(cls, spec: FrontEndSpec, corpus: Corpus, rows: Sequence[int] | np.ndarray, *,
                    crop_s: float = FINE_TUNING_CROP_S, seed: int = 0, observer: ProgressObserver = NULL_OBSERVER) -> Sampler:
        """``inputs(rows)`` for fine-tuning a model on ``rows`` of ``corpus`` (hardening, protection), as P4 trains:
        a fixed-length model is fed its made inputs with the fixed reference; a variable-length one random crops
        of ``crop_s`` seconds, each with a random neutral reference of its speaker, from a generator seeded with ``seed``."""
        variable = spec.duration_s is None
        inputs = cls(spec, corpus, rows=rows, keep_audio=variable, observer=observer)
        return inputs.sampler(crop_s=crop_s if variable else None, random_reference=variable and bool(spec.reference_inputs),
                              seed=seed)

    def sampler(self, *, crop_s: float | None = None, random_reference: bool = False, seed: int = 0) -> Sampler:
        """``inputs(rows)`` for a tensor of positions ``rows``: random crops of ``crop_s`` seconds (whole when None)
        and random references (else the fixed one), drawn anew at every call from this sampler's own generator,
        seeded with ``seed``, so a run repeats; without draws, the made inputs."""
        if self.audio is None:
            if crop_s is not None or random_reference:
                raise ValueError("random crops and references are cut from whole waveforms (keep_audio=True)")
            tensors = self.tensors
            return lambda rows: [tensor[rows] for tensor in tensors]
        audio, corpus_rows, rng = self.audio, self.rows, np.random.default_rng(seed)
        crop = None if crop_s is None else int(round(crop_s * audio.sample_rate))
        return lambda rows: audio.batch(corpus_rows[rows.cpu().numpy()].tolist(), crop_samples=crop,
                                        random_reference=random_reference, rng=rng)

    def whole(self, rows: Sequence[int] | np.ndarray) -> list[torch.Tensor]:
        """The inputs of positions ``rows`` as at test time: whole utterances with the fixed reference
        (from kept audio, of one length: one row at a time for a variable-length model)."""
        if self.audio is None:
            index = torch.as_tensor(np.asarray(rows, dtype=np.int64))
            return [tensor[index] for tensor in self.tensors]
        return self.audio.batch(self.rows[np.asarray(rows, dtype=np.int64)].tolist())

    def moments(self, rows: np.ndarray) -> tuple[float, float]:
        """Mean and std of the primary features of positions ``rows``, whole utterances (global normalisation)."""
        if self.audio is None:
            features = self.tensors[0][rows]
            return float(features.mean()), float(features.std())
        audio = self.audio
        with torch.no_grad():
            values = torch.cat([audio.frontend(torch.from_numpy(audio.waveforms[row][None])).flatten()
                                for row in self.rows[rows]])
        return float(values.mean()), float(values.std())

    def normalise(self, spec: FrontEndSpec, *, device: str = "cpu") -> None:
        """Feed ``spec``, the same front-end with global normalisation, from now on, on ``device``: made inputs
        are normalised and moved there; kept audio is analysed there."""
        if spec.normalisation != "global":
            raise ValueError(f"normalise takes a spec with global normalisation (got {spec.normalisation!r})")
        if self.audio is not None:
            self.audio.frontend, self.audio.device = FrontEnd(spec).to(device), device
        else:
            self.tensors = [((tensor - spec.mean) / spec.std).to(device) for tensor in self.tensors]
