"""DEMoS (Parada-Cabaleiro et al., 2020), Italian: ``DEMOS/{PR,NP}_<g>_<speaker>_<emo><nn><x>.wav`` and ``NEU/...``.

The gender is the ``f``/``m`` token, the speaker the token before the emotion; PR marks
prototypical and NP non-prototypical productions. No official split: folds are speaker-disjoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ser_audit.corpus.interface import Utterance
from ser_audit.corpus.loader import CorpusLoader, CorpusOption
from ser_audit.errors import CorpusError

EMOTIONS = {"rab": "angry", "tri": "sad", "gio": "happy", "pau": "fearful", "dis": "disgust", "col": "guilt",
            "sor": "surprised", "neu": "neutral"}


class DemosLoader(CorpusLoader):
    name = "demos"
    description = "DEMoS: 68 Italian speakers (23 F / 45 M), 7 emotions + neutral, prototypical flag"
    markers = ("DEMOS",)
    options = (CorpusOption("include_neutral", bool, True, "read the NEU folder too"),)

    def emotions(self, options: dict[str, Any]) -> tuple[str, ...]:
        return tuple(e for e in EMOTIONS.values() if options["include_neutral"] or e != "neutral")

    def read(self, root: Path, options: dict[str, Any]) -> list[Utterance]:
        folders = ["DEMOS", *(["NEU"] if options["include_neutral"] and (root / "NEU").is_dir() else [])]
        utterances = []
        for folder in folders:
            for path in sorted((root / folder).glob("*.wav")):
                tokens = path.stem.split("_")
                genders = [t for t in tokens[:-1] if t in ("f", "m")]
                emotion = tokens[-1][:3]
                if len(tokens) < 4 or len(genders) != 1 or emotion not in EMOTIONS:
                    raise CorpusError(f"demos: {path.name} does not follow <PR|NP>_<f|m>_<speaker>_<emo><nn><x>.wav")
                utterances.append(
                    Utterance(
                        id=f"{folder}/{path.stem}", path=path, speaker=tokens[-2],
                        gender="female" if genders[0] == "f" else "male", emotion=EMOTIONS[emotion],
                        extra={"prototypical": tokens[0] == "PR"} if tokens[0] in ("PR", "NP") else {},
                    )
                )
        return utterances


LOADER = DemosLoader()
