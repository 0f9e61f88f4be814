"""Transcript stages: a recogniser trained with CTC, decoded greedily and scored by symbol error rate.

A stage with ``target="transcript"`` trains the module's ``transcribe(*inputs)``, which returns
frame logits ``[batch, frames, len(alphabet) + 1]`` with the CTC blank at index 0 and symbol
``alphabet[k]`` at ``k + 1``. The stage holds out the speakers of its corpus's ``test`` session
(the last session when none is called ``test``), decodes them greedily (best symbol per frame,
repeats merged, blanks dropped) and records the symbol error rate: edit distance over the
reference's length, summed over utterances. Beside it goes the rate of always answering the
training transcripts' most frequent symbol, repeated to the reference's length: the chance-level
reference a recogniser must clearly beat.

Utterances longer than the model's fixed input would be cut, and with them their transcript;
they are left out of the stage and counted.

A stage with ``shares`` caches what it trained: the parameters matching those patterns, keyed by
the stage, its corpus, the seed, the initial values of those parameters, the stage's input
tensors and the source of the module's classes. A later model whose recipe runs the same stage
on the same data from the same start loads them instead of training (P3's three SER variants
on the recogniser share it this way).

Example:
    >>> logits = torch.tensor([[[0.0, 5.0, 0.0], [0.0, 5.0, 0.0], [5.0, 0.0, 0.0], [0.0, 5.0, 0.0], [0.0, 0.0, 5.0]]])
    >>> greedy_decode(logits)
    [[1, 1, 2]]
    >>> symbol_error_rate(["ab"], ["b"])
    0.5
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import soundfile
import torch
from torch import nn

from ser_audit.corpus.interface import Corpus
from ser_audit.errors import ConfigError, CorpusError, ModelError
from ser_audit.files import atomic_write
from ser_audit.hashing import source_sha256
from ser_audit.models.loop import BatchLoss, run_epochs, stage_optimiser, unfreeze
from ser_audit.models.reference import Stage
from ser_audit.progress import ProgressObserver

BLANK = 0
HELD_OUT_SESSION = "test"
DECODE_BATCH = 64


def greedy_decode(logits: torch.Tensor) -> list[list[int]]:
    """Best class per frame, repeats merged, blanks dropped: ``[batch, frames, classes]`` to label lists."""
    best = logits.argmax(-1)
    out = []
    for row in best.tolist():
        merged = [label for k, label in enumerate(row) if k == 0 or label != row[k - 1]]
        out.append([label for label in merged if label != BLANK])
    return out


def edit_distance(reference: Sequence[Any], hypothesis: Sequence[Any]) -> int:
    """Fewest substitutions, insertions and deletions that turn ``hypothesis`` into ``reference``."""
    previous = list(range(len(hypothesis) + 1))
    for i, wanted in enumerate(reference, start=1):
        current = [i]
        for j, got in enumerate(hypothesis, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (wanted != got)))
        previous = current
    return previous[-1]


def symbol_error_rate(references: Sequence[Sequence[Any]], hypotheses: Sequence[Sequence[Any]]) -> float:
    """Edit distances summed over utterances, over the references' summed length."""
    edits = sum(edit_distance(r, h) for r, h in zip(references, hypotheses, strict=True))
    return edits / max(1, sum(len(r) for r in references))


def encode(text: str, alphabet: str, *, where: str) -> list[int]:
    """``text`` as label indices (symbol ``alphabet[k]`` is ``k + 1``; 0 is the blank)."""
    unknown = sorted(set(text) - set(alphabet))
    if unknown:
        raise CorpusError(f"{where}: transcript {text!r} has symbol(s) {unknown} outside the model's alphabet {alphabet!r}")
    return [alphabet.index(symbol) + 1 for symbol in text]


def ctc_loss(module: nn.Module, inputs: Sequence[torch.Tensor], labels: list[list[int]]) -> BatchLoss:
    """CTC of ``module.transcribe(*inputs)`` against each row's labels, every frame of the input counted."""
    criterion = nn.CTCLoss(blank=BLANK, zero_infinity=True)

    def loss(rows: torch.Tensor, _epoch: int) -> torch.Tensor:
        logits = module.transcribe(*(tensor[rows] for tensor in inputs))  # type: ignore[operator]
        log_probs = logits.log_softmax(-1).transpose(0, 1)  # [frames, batch, classes]
        targets = [torch.tensor(labels[int(row)], dtype=torch.long) for row in rows]
        lengths = torch.tensor([len(t) for t in targets], dtype=torch.long)
        frames = torch.full((len(targets),), log_probs.shape[0], dtype=torch.long)
        return criterion(log_probs, torch.cat(targets), frames, lengths)

    return loss


def transcribe(module: nn.Module, inputs: Sequence[torch.Tensor], rows: np.ndarray) -> list[list[int]]:
    """Greedy label sequences of ``rows``, in eval mode."""
    module.eval()
    index = torch.from_numpy(rows)
    out: list[list[int]] = []
    with torch.no_grad():
        for start in range(0, len(index), DECODE_BATCH):
            batch = index[start : start + DECODE_BATCH]
            out += greedy_decode(module.transcribe(*(tensor[batch] for tensor in inputs)))  # type: ignore[operator]
    return out


def train_transcript_stage(
    module: nn.Module, stage: Stage, corpus: Corpus, inputs: Sequence[torch.Tensor], *, max_seconds: float | None,
    shuffle: Callable[[int], torch.Tensor], seed: int, cache_dir: Path | None, observer: ProgressObserver, label: str,
) -> dict[str, Any]:
    """Train ``module.transcribe`` with CTC on ``corpus`` (its held-out speakers kept out) and score it.

    Returns:
        The stage's record: data, symbol error rate on the held-out speakers, the most-frequent-symbol
        reference, a few decoded examples, and the training time.
    """
    if not hasattr(module, "transcribe"):
        raise ModelError(f"{label}: a transcript stage needs a module with transcribe(*inputs); "
                         f"{type(module).__name__} has none")
    texts = [utterance.text for utterance in corpus]
    missing = [u.id for u, text in zip(corpus, texts) if not text]
    if missing:
        raise CorpusError(f"{label}: corpus {corpus.name!r} has no transcript for {len(missing)} utterance(s), "
                          f"e.g. {missing[0]!r}; a transcript stage needs a text column")
    labels = [encode(str(text), stage.alphabet, where=f"corpus {corpus.name!r}") for text in texts]
    sessions = [u.session or "" for u in corpus]
    held_session = HELD_OUT_SESSION if HELD_OUT_SESSION in sessions else sorted(set(sessions))[-1]
    too_long = _too_long(corpus, max_seconds)
    held = np.array([k for k, s in enumerate(sessions) if s == held_session and k not in too_long], dtype=np.int64)
    rows = np.array([k for k, s in enumerate(sessions) if s != held_session and k not in too_long], dtype=np.int64)
    if not len(rows) or not len(held):
        raise CorpusError(f"{label}: corpus {corpus.name!r} needs speakers outside and inside session {held_session!r}")
    with torch.no_grad():
        outputs = module.transcribe(*(tensor[:1] for tensor in inputs)).shape[-1]  # type: ignore[operator]
    if outputs != len(stage.alphabet) + 1:
        raise ModelError(f"{label}: transcribe gives {outputs} classes per frame; the alphabet "
                         f"{stage.alphabet!r} needs {len(stage.alphabet) + 1} (blank first)")

    started = time.perf_counter()
    cached = _cache_file(module, stage, corpus, inputs, rows, seed, cache_dir)
    if cached is not None and cached.is_file():
        saved = torch.load(str(cached), map_location="cpu", weights_only=True)
        module.load_state_dict(saved["state"], strict=False)
        for _ in range(stage.epochs):  # the shuffle moves on as if the stage had trained
            shuffle(len(rows))
        observer.note(f"{label}: the trained recogniser comes from the stage cache ({cached.name})")
        return dict(saved["record"], cached=True)

    optimiser = stage_optimiser(module, stage)
    try:
        # The stage draws no global random numbers, so whatever comes after it does not depend on the cache.
        gpus = sorted({p.device.index or 0 for p in module.parameters() if p.is_cuda})
        with torch.random.fork_rng(devices=gpus), observer.task(label, total=stage.epochs) as task:
            run_epochs(module, optimiser, ctc_loss(module, inputs, labels), torch.from_numpy(rows), epochs=stage.epochs,
                       batch_size=stage.batch_size, shuffle=shuffle, clip_grad_norm=stage.clip_grad_norm,
                       rate_factor=stage.rate_factor if stage.lr_milestones else None,
                       on_epoch=lambda _epoch: task.advance())
    finally:
        unfreeze(module)
    record = _score(module, stage, corpus, inputs, labels, rows, held, held_session, len(too_long))
    record["stage_seconds"] = round(time.perf_counter() - started, 1)
    observer.note(
        f"{label}: held-out symbol error rate {record['symbol_error_rate']:.3f} on {record['n_held_out']} utterances of "
        f"{len(record['held_out_speakers'])} unseen speakers (always {record['baseline_symbol']!r}: "
        f"{record['baseline_symbol_error_rate']:.3f})"
    )
    if cached is not None:
        state = {name: value.cpu() for name, value in module.state_dict().items() if _shared(name, stage.shares)}
        atomic_write(cached, lambda path: torch.save({"state": state, "record": record}, path))
    return dict(record, cached=False)


def _score(
    module: nn.Module, stage: Stage, corpus: Corpus, inputs: Sequence[torch.Tensor], labels: list[list[int]],
    rows: np.ndarray, held: np.ndarray, held_session: str, n_too_long: int,
) -> dict[str, Any]:
    hypotheses = transcribe(module, inputs, held)
    references = [labels[k] for k in held]
    counts = Counter(label for k in rows for label in labels[k])
    frequent = counts.most_common(1)[0][0]
    baseline = [[frequent] * len(reference) for reference in references]

    def spell(sequence: list[int]) -> str:
        return "".join(stage.alphabet[label - 1] for label in sequence)

    return {
        "target": "transcript", "corpus": corpus.name, "corpus_sha256": corpus.manifest_sha256(),
        "n_train": int(len(rows)), "speakers": sorted({corpus.utterances[k].speaker for k in rows}),
        "held_out_session": held_session, "n_held_out": int(len(held)),
        "held_out_speakers": sorted({corpus.utterances[k].speaker for k in held}),
        "n_left_out_too_long": n_too_long,
        "symbol_error_rate": symbol_error_rate(references, hypotheses),
        "baseline_symbol": spell([frequent]),
        "baseline_symbol_error_rate": symbol_error_rate(references, baseline),
        "decoding": "greedy (best class per frame, repeats merged, blanks dropped)",
        "examples": [{"reference": spell(r), "decoded": spell(h)} for r, h in list(zip(references, hypotheses))[:5]],
    }


def _too_long(corpus: Corpus, max_seconds: float | None) -> set[int]:
    """Utterances the model's fixed input would cut, taking part of the transcript with them."""
    if max_seconds is None:
        return set()
    return {k for k, u in enumerate(corpus) if soundfile.info(str(u.path)).duration > max_seconds + 1e-9}


def _shared(name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatchcase(name, pattern) for pattern in patterns)


def _cache_file(
    module: nn.Module, stage: Stage, corpus: Corpus, inputs: Sequence[torch.Tensor], rows: np.ndarray, seed: int,
    cache_dir: Path | None,
) -> Path | None:
    """Where the stage's shared parameters are cached: a hash of everything that decides them."""
    if not stage.shares or cache_dir is None:
        return None
    digest = hashlib.sha256(repr((stage, corpus.manifest_sha256(), seed, rows.tolist())).encode())
    state = module.state_dict()
    names = sorted(name for name in state if _shared(name, stage.shares))
    if not names:
        raise ConfigError(f"Stage.shares {list(stage.shares)} matches no parameter of the model")
    for name in names:
        digest.update(name.encode())
        digest.update(_tensor_bytes(state[name]))
    for tensor in inputs:
        digest.update(_tensor_bytes(tensor))
    digest.update(_code_digest(module, stage.shares).encode())
    return cache_dir / "stages" / f"transcript-{digest.hexdigest()[:24]}.pt"


def _code_digest(module: nn.Module, shares: Sequence[str]) -> str:
    """The source of the classes that compute the shared parameters' outputs: the module's own (its
    ``transcribe``) and every submodule on the path to a shared parameter. A changed ``forward``
    trains the stage again; a different head beside the shared part does not."""
    owners = {""}
    for name, _ in module.named_parameters():
        if _shared(name, shares):
            parts = name.split(".")[:-1]
            owners.update(".".join(parts[:k]) for k in range(1, len(parts) + 1))
    return source_sha256(type(sub) for name, sub in module.named_modules() if name in owners)


def _tensor_bytes(tensor: torch.Tensor) -> bytes:
    return f"{tensor.dtype}{tuple(tensor.shape)}".encode() + tensor.detach().cpu().contiguous().numpy().tobytes()
