"""EmoDB, the Berlin Database of Emotional Speech (Burkhardt et al., 2005): ``wav/03a01Fa.wav``.

Characters 0-1 are the speaker, 2-4 the text, 5 the emotion, 6 the version. Speakers
03 10 11 12 15 are male, 08 09 13 14 16 female.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ser_audit.corpus.interface import Utterance
from ser_audit.corpus.loader import CorpusLoader
from ser_audit.errors import CorpusError

EMOTIONS = {"W": "angry", "L": "boredom", "E": "disgust", "A": "fearful", "F": "happy", "T": "sad", "N": "neutral"}
MALE = {"03", "10", "11", "12", "15"}
FEMALE = {"08", "09", "13", "14", "16"}


class EmoDbLoader(CorpusLoader):
    name = "emodb"
    description = "EmoDB: 10 German actors, 7 emotions, 10 sentences"
    markers = ("wav/*.wav",)
    sample_rate = 16_000

    def emotions(self, options: dict[str, Any]) -> tuple[str, ...]:
        return tuple(EMOTIONS.values())

    def read(self, root: Path, options: dict[str, Any]) -> list[Utterance]:
        utterances = []
        for path in sorted((root / "wav").glob("*.wav")):
            stem = path.stem
            speaker, text, emotion = stem[:2], stem[2:5], stem[5:6]
            if len(stem) != 7 or speaker not in MALE | FEMALE or emotion not in EMOTIONS:
                raise CorpusError(f"emodb: {path.name} does not follow SSTTTEV.wav with a known speaker and emotion")
            utterances.append(
                Utterance(
                    id=stem, path=path, speaker=speaker, gender="male" if speaker in MALE else "female",
                    emotion=EMOTIONS[emotion], session=speaker, sentence=text, extra={"version": stem[6]},
                )
            )
        return utterances


LOADER = EmoDbLoader()
