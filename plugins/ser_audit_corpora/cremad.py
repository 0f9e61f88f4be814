"""CREMA-D (Cao et al., 2014): ``AudioWAV/<actor>_<SENTENCE>_<EMO>_<LEVEL>.wav`` and ``VideoDemographics.csv``.

Gender comes from the demographics file (ActorID, Age, Sex, Race, Ethnicity); an actor
missing from it is an error. ``1076_MTI_SAD_XX`` is a known silent file and is skipped.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from ser_audit.corpus.interface import Utterance
from ser_audit.corpus.loader import CorpusLoader
from ser_audit.errors import CorpusError

EMOTIONS = {"ANG": "angry", "DIS": "disgust", "FEA": "fearful", "HAP": "happy", "NEU": "neutral", "SAD": "sad"}
KNOWN_SILENT = {"1076_MTI_SAD_XX"}


class CremaDLoader(CorpusLoader):
    name = "crema-d"
    description = "CREMA-D: 91 actors, 6 emotions, 12 sentences, gender from VideoDemographics.csv"
    markers = ("AudioWAV", "VideoDemographics.csv")
    sample_rate = 16_000

    def emotions(self, options: dict[str, Any]) -> tuple[str, ...]:
        return tuple(EMOTIONS.values())

    def read(self, root: Path, options: dict[str, Any]) -> list[Utterance]:
        demographics = _demographics(root / "VideoDemographics.csv")
        utterances = []
        for path in sorted((root / "AudioWAV").glob("*.wav")):
            parts = path.stem.split("_")
            if len(parts) != 4:
                raise CorpusError(f"crema-d: {path.name} does not follow <actor>_<SENTENCE>_<EMO>_<LEVEL>.wav")
            actor, sentence, emotion, level = parts
            if path.stem in KNOWN_SILENT:
                continue
            if actor not in demographics:
                raise CorpusError(f"crema-d: actor {actor} ({path.name}) is missing from VideoDemographics.csv")
            if emotion not in EMOTIONS:
                raise CorpusError(f"crema-d: {path.name} has unknown emotion {emotion}")
            utterances.append(
                Utterance(
                    id=path.stem, path=path, speaker=actor, gender=demographics[actor], emotion=EMOTIONS[emotion],
                    sentence=sentence, extra={"level": level},
                )
            )
        return utterances


def _demographics(path: Path) -> dict[str, str]:
    spellings = {"male": "male", "female": "female"}
    actors = {}
    # utf-8-sig: a copy re-saved from a spreadsheet often starts with a byte-order mark, which would glue itself to ActorID.
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = [column for column in ("ActorID", "Sex") if column not in (reader.fieldnames or [])]
        if missing:
            raise CorpusError(f"crema-d: {path} lacks the column(s) {', '.join(missing)}; it needs ActorID and Sex "
                              f"(found {', '.join(reader.fieldnames or []) or 'no header'})")
        for number, row in enumerate(reader, start=2):
            sex = spellings.get(str(row.get("Sex") or "").strip().lower())
            if sex is None:
                raise CorpusError(f"crema-d: {path.name} row {number} gives actor {row.get('ActorID')} the sex "
                                  f"{row.get('Sex')!r}; Sex must be Male or Female")
            actors[str(row["ActorID"]).strip()] = sex
    return actors


LOADER = CremaDLoader()
