"""Utterances and corpora: the data model every loader produces."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from ser_audit.errors import CorpusError
from ser_audit.hashing import file_sha256

GENDERS = ("female", "male")


@dataclass(frozen=True)
class Utterance:
    """One labelled recording.

    Attributes:
        id: Unique utterance id within the corpus.
        path: Absolute path of the audio file.
        speaker: Speaker id (unique within the corpus).
        gender: ``"female"`` or ``"male"``.
        emotion: Emotion label (corpus vocabulary, lower case).
        session: Recording session, used for leave-one-session-out folds.
        spontaneity: ``"improvised"`` / ``"scripted"`` where the corpus has it.
        sentence: Sentence (text) id where the corpus has it.
        text: The transcript where the corpus has one (a ``text`` manifest column).
        extra: Any further metadata, kept as given.
    """

    id: str
    path: Path
    speaker: str
    gender: str
    emotion: str
    session: str | None = None
    spontaneity: str | None = None
    sentence: str | None = None
    text: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    def manifest_row(self, root: Path | None = None) -> dict[str, Any]:
        path = self.path.relative_to(root).as_posix() if root else str(self.path)
        row: dict[str, Any] = {
            "id": self.id,
            "path": path,
            "speaker": self.speaker,
            "gender": self.gender,
            "emotion": self.emotion,
            "session": self.session,
            "spontaneity": self.spontaneity,
            "sentence": self.sentence,
        }
        if self.text is not None:  # only then, so untranscribed corpora keep their manifest hash
            row["text"] = self.text
        row.update(self.extra)
        return row


@dataclass
class Corpus:
    """An ordered collection of utterances with a name and a root folder."""

    name: str
    utterances: list[Utterance]
    root: Path
    emotions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.utterances:
            raise CorpusError(f"corpus {self.name!r} has no utterances (root {self.root})")
        ids = [u.id for u in self.utterances]
        duplicates = [i for i, n in Counter(ids).items() if n > 1]
        if duplicates:
            paths = [str(u.path) for u in self.utterances if u.id == duplicates[0]][:2]
            raise CorpusError(f"corpus {self.name!r}: duplicate utterance id {duplicates[0]!r} ({' and '.join(paths)}); "
                              "give every utterance its own id (a manifest's 'id' column)")
        first: dict[str, Utterance] = {}
        for u in self.utterances:
            if u.gender not in GENDERS:
                raise CorpusError(
                    f"corpus {self.name!r}: utterance {u.id!r} has gender {u.gender!r}; "
                    f"use one of {', '.join(GENDERS)}"
                )
            seen = first.setdefault(u.speaker, u)
            if seen.gender != u.gender:  # the audit's tests relabel whole speakers
                raise CorpusError(f"corpus {self.name!r}: speaker {u.speaker!r} is {seen.gender} in utterance "
                                  f"{seen.id!r} and {u.gender} in {u.id!r}; give each speaker one gender")
        if not self.emotions:
            self.emotions = tuple(sorted({u.emotion for u in self.utterances}))

    def __len__(self) -> int:
        return len(self.utterances)

    def __iter__(self) -> Iterator[Utterance]:
        return iter(self.utterances)

    def subset(self, indices: Iterable[int]) -> "Corpus":
        return Corpus(self.name, [self.utterances[i] for i in indices], self.root, self.emotions)

    @property
    def speakers(self) -> list[str]:
        return sorted({u.speaker for u in self.utterances})

    def labels(self, attribute: str) -> list[str]:
        if attribute == "gender":
            return [u.gender for u in self.utterances]
        if attribute == "speaker":
            return [u.speaker for u in self.utterances]
        if attribute == "emotion":
            return [u.emotion for u in self.utterances]
        raise CorpusError(f"unknown attribute {attribute!r}; use gender, speaker or emotion")

    def manifest_sha256(self) -> str:
        """Hash of labels and audio content hashes, independent of where the corpus sits."""
        digest = hashlib.sha256()
        for u in self.utterances:
            row = u.manifest_row()
            row["path"] = file_sha256(u.path)
            digest.update(json.dumps(row, sort_keys=True, default=str).encode())
        return digest.hexdigest()

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "n_utterances": len(self.utterances),
            "n_speakers": len(self.speakers),
            "by_gender": dict(sorted(Counter(u.gender for u in self.utterances).items())),
            "by_emotion": dict(sorted(Counter(u.emotion for u in self.utterances).items())),
            "by_speaker": dict(sorted(Counter(u.speaker for u in self.utterances).items())),
            "emotions": list(self.emotions),
        }
