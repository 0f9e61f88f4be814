"""Speaker-disjoint folds.

An attacker that has heard a test speaker learns identity rather than the
attribute and overstates leakage, so every fold here keeps speakers apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from ser_audit.corpus.interface import Corpus
from ser_audit.errors import ConfigError, CorpusError


@dataclass(frozen=True)
class Fold:
    """Indices into a corpus; ``name`` says what was held out."""

    name: str
    train: np.ndarray
    test: np.ndarray


def speaker_disjoint_folds(
    corpus: Corpus, *, n_folds: int | None = None, seed: int = 0, sentence_disjoint: bool = False
) -> list[Fold]:
    """Leave-one-session-out when sessions partition the speakers, else gender-stratified group k-fold.

    Args:
        corpus: The corpus to split.
        n_folds: Number of folds for group k-fold; ignored for leave-one-session-out
            unless it differs from the number of sessions, in which case group k-fold is used.
        seed: Shuffling seed for group k-fold.
        sentence_disjoint: Also drop from each training side the utterances whose sentence
            occurs on the test side, so an attacker cannot lean on shared content.
    """
    if sentence_disjoint and all(u.sentence is None for u in corpus):
        # The flag cannot apply at all: say so before anything about the speakers.
        raise ConfigError(f"--sentence-disjoint: corpus {corpus.name!r} has no sentence ids")
    require_speakers_of_each_gender(corpus, flag="--corpus")
    folds = _speaker_folds(corpus, n_folds=n_folds, seed=seed)
    _check_training_sides(corpus, folds)
    return _sentence_disjoint(corpus, folds, seed) if sentence_disjoint else folds


MIN_SPEAKERS_PER_GENDER = 2


def require_speakers_of_each_gender(corpus: Corpus, *, flag: str, minimum: int = MIN_SPEAKERS_PER_GENDER) -> None:
    """Gender attackers learn from some speakers and are tested on others, so both genders need at
    least ``minimum`` speakers: one of each and the test fold's speaker leaves the other side one class.

    Raises:
        CorpusError: naming ``flag``, the corpus and the speakers found per gender.
    """
    speakers: dict[str, set[str]] = {"female": set(), "male": set()}
    for utterance in corpus:
        speakers.setdefault(utterance.gender, set()).add(utterance.speaker)
    counts = {gender: len(found) for gender, found in sorted(speakers.items())}
    if any(count < minimum for count in counts.values()):
        found = ", ".join(f"{count} {gender}" for gender, count in counts.items())
        raise CorpusError(
            f"{flag} {corpus.name}: too few speakers for speaker-disjoint gender folds: need at least {minimum} "
            f"speakers of each gender, found {found}; add speakers or choose another corpus"
        )


def _check_training_sides(corpus: Corpus, folds: list[Fold]) -> None:
    genders = np.array([u.gender for u in corpus])
    for fold in folds:
        if len(set(genders[fold.train].tolist())) < 2:
            raise CorpusError(
                f"--corpus {corpus.name}: fold {fold.name} leaves one gender only on the training side; "
                "give more speakers of each gender or set --folds"
            )


def _sentence_disjoint(corpus: Corpus, folds: list[Fold], seed: int) -> list[Fold]:
    """Split sentences into groups too: fold k tests only sentence group k and trains on the others.

    Most acted corpora have every speaker read every sentence, so removing the test fold's
    sentences from training would leave nothing; crossing speaker folds with sentence groups
    keeps both sides non-empty. Utterances without a sentence id stay on both sides.
    """
    sentences = [u.sentence for u in corpus]
    distinct = sorted({s for s in sentences if s is not None})
    if not distinct:
        raise ConfigError(f"--sentence-disjoint: corpus {corpus.name!r} has no sentence ids")
    n_groups = min(len(folds), len(distinct))
    order = np.random.default_rng(seed).permutation(len(distinct))
    group_of = {distinct[i]: rank % n_groups for rank, i in enumerate(order)}
    group = np.array([-1 if s is None else group_of[s] for s in sentences])
    disjoint = []
    for k, fold in enumerate(folds):
        wanted = k % n_groups
        test = fold.test[(group[fold.test] == wanted) | (group[fold.test] == -1)]
        train = fold.train[group[fold.train] != wanted]
        if not len(test) or not len(train):
            raise CorpusError(f"--sentence-disjoint: fold {fold.name} is left empty; use fewer --folds")
        disjoint.append(Fold(name=f"{fold.name},sentences={wanted + 1}/{n_groups}", train=train, test=test))
    return disjoint


def _speaker_folds(corpus: Corpus, *, n_folds: int | None, seed: int) -> list[Fold]:
    return speaker_folds(
        np.array([u.speaker for u in corpus]), np.array([u.gender for u in corpus]), [u.session for u in corpus],
        n_folds=n_folds, seed=seed, name=corpus.name,
    )


def speaker_folds(
    speakers: np.ndarray,
    genders: np.ndarray,
    sessions: Sequence[str | None],
    *,
    n_folds: int | None = None,
    seed: int = 0,
    name: str = "corpus",
) -> list[Fold]:
    """``speaker_disjoint_folds`` on plain arrays (one entry per utterance)."""
    if all(s is not None for s in sessions):
        by_speaker: dict[str, set[str | None]] = {}
        for speaker, session in zip(speakers.tolist(), sessions):
            by_speaker.setdefault(speaker, set()).add(session)
        distinct_sessions = sorted(set(sessions), key=str)
        speakers_tied_to_one_session = all(len(v) == 1 for v in by_speaker.values())
        if speakers_tied_to_one_session and len(distinct_sessions) >= 2 and n_folds in (None, len(distinct_sessions)):
            session_array = np.array(sessions)
            return [
                Fold(
                    name=f"session={session}",
                    train=np.flatnonzero(session_array != session),
                    test=np.flatnonzero(session_array == session),
                )
                for session in distinct_sessions
            ]
    n_speakers = len(set(speakers.tolist()))
    k = n_folds or min(5, n_speakers)
    if k < 2:
        raise ConfigError(f"--folds must be at least 2 (got {k})")
    if n_speakers < k:
        raise CorpusError(
            f"corpus {name!r} has {n_speakers} speakers, too few for {k} speaker-disjoint folds; lower --folds"
        )
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    folds = []
    for i, (train, test) in enumerate(splitter.split(np.zeros(len(speakers)), genders, groups=speakers)):
        folds.append(Fold(name=f"fold={i + 1}", train=np.sort(train), test=np.sort(test)))
    return folds


def inner_split(groups: np.ndarray, labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray] | None:
    """A speaker-disjoint split of a training side: about ``fraction`` of each class's speakers held out
    (at least one), for choices that must not see the test speakers (epochs, the strongest attacker).

    Returns (rows to train on, rows held out), or None when some class has fewer than two
    speakers: holding one out would leave none to learn that class from.
    """
    rng = np.random.default_rng([seed, 0x1AE])
    held_out: list[object] = []
    for label in np.unique(labels):
        speakers = np.unique(groups[labels == label])
        if len(speakers) < 2:
            return None
        count = max(1, int(round(fraction * len(speakers))))
        held_out.extend(rng.choice(speakers, size=count, replace=False).tolist())
    validation = np.isin(groups, np.asarray(held_out))
    return np.flatnonzero(~validation), np.flatnonzero(validation)


def assert_speaker_disjoint(corpus: Corpus, folds: list[Fold]) -> None:
    """Raise if any speaker sits on both sides of a fold (a guard, also used by tests)."""
    for fold in folds:
        train_speakers = {corpus.utterances[i].speaker for i in fold.train}
        test_speakers = {corpus.utterances[i].speaker for i in fold.test}
        shared = train_speakers & test_speakers
        if shared:
            raise CorpusError(f"fold {fold.name}: speakers {sorted(shared)} on both sides")
