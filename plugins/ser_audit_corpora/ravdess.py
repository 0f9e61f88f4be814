"""RAVDESS (Livingstone & Russo, 2018): 24 actors, speech files ``Actor_NN/03-01-EE-II-SS-RR-AA.wav``.

Codes: modality (03 audio-only), vocal channel (01 speech), emotion EE, intensity II,
statement SS, repetition RR, actor AA. Odd actors are male, even actors female. Audio is
48 kHz and is resampled to the model's rate on reading.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from ser_audit.corpus.interface import Utterance
from ser_audit.corpus.loader import CorpusLoader, CorpusOption
from ser_audit.errors import CorpusError

EMOTIONS = {
    "01": "neutral", "02": "calm", "03": "happy", "04": "sad", "05": "angry", "06": "fearful", "07": "disgust", "08": "surprised",
}


class RavdessLoader(CorpusLoader):
    name = "ravdess"
    description = "RAVDESS speech: 24 actors (odd male), 8 emotions, 2 statements, 48 kHz"
    markers = ("Actor_*",)
    sample_rate = 48_000
    options = (
        CorpusOption("demographics", Path, None, "CSV with columns actor,gender to check against the odd/even rule"),
    )

    def emotions(self, options: dict[str, Any]) -> tuple[str, ...]:
        return tuple(EMOTIONS.values())

    def read(self, root: Path, options: dict[str, Any]) -> list[Utterance]:
        declared = _demographics(options["demographics"]) if options["demographics"] else {}
        utterances = []
        for path in sorted(root.glob("Actor_*/*.wav")):
            codes = path.stem.split("-")
            if len(codes) != 7 or not all(c.isdigit() for c in codes):
                raise CorpusError(f"ravdess: {path.name} does not follow MM-VV-EE-II-SS-RR-AA.wav")
            modality, channel, emotion, intensity, statement, repetition, actor = codes
            if modality != "03" or channel != "01":
                continue  # video or song files
            if path.parent.name != f"Actor_{actor}":
                raise CorpusError(f"ravdess: {path} says actor {actor} but sits in {path.parent.name}")
            gender = "male" if int(actor) % 2 else "female"
            if actor in declared and declared[actor] != gender:
                raise CorpusError(
                    f"ravdess: actor {actor} is {gender} by RAVDESS's odd/even rule but {declared[actor]} "
                    f"in {options['demographics']}; fix one of them"
                )
            if emotion not in EMOTIONS:
                raise CorpusError(f"ravdess: {path.name} has unknown emotion code {emotion}")
            utterances.append(
                Utterance(
                    id=path.stem, path=path, speaker=f"Actor_{actor}", gender=gender, emotion=EMOTIONS[emotion],
                    sentence=f"statement{statement}",
                    extra={"intensity": "strong" if intensity == "02" else "normal", "repetition": int(repetition)},
                )
            )
        return utterances


def _demographics(path: Path) -> dict[str, str]:
    if not path.is_file():
        raise CorpusError(f"--corpus-option demographics={path}: file not found")
    spellings = {"m": "male", "male": "male", "f": "female", "female": "female"}
    rows = {}
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = [column for column in ("actor", "gender") if column not in (reader.fieldnames or [])]
        if missing:
            raise CorpusError(f"--corpus-option demographics={path}: lacks the column(s) {', '.join(missing)}; "
                              "write a CSV with the header actor,gender (e.g. 1,male or Actor_01,female)")
        for number, row in enumerate(reader, start=2):
            # The folder name (Actor_01) or its number (1, 01).
            number_text = str(row["actor"] or "").strip().removeprefix("Actor_")
            if not number_text.isdigit():
                raise CorpusError(f"--corpus-option demographics={path} row {number}: actor {row['actor']!r} is "
                                  "neither a number nor an Actor_NN folder name")
            rows[f"{int(number_text):02d}"] = spellings.get(str(row["gender"] or "").strip().lower(), row["gender"])
    return rows


LOADER = RavdessLoader()
