"""MSP-Podcast (Lotfian & Busso, 2019): ``Audios/*.wav`` and ``Labels/labels_consensus.csv``.

Release 1.8 spells the label file ``labels_concensus.csv``; both are read. Segments whose
speaker (or gender) is ``Unknown`` cannot enter speaker-disjoint folds and are left out.
``Split_Set`` becomes each utterance's session.
"""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path
from typing import Any

from ser_audit.corpus.interface import Utterance
from ser_audit.corpus.loader import CorpusLoader, CorpusOption
from ser_audit.errors import CorpusError

EMOTIONS = {"A": "angry", "S": "sad", "H": "happy", "U": "surprised", "F": "fearful", "D": "disgust", "C": "contempt",
            "N": "neutral", "O": "other", "X": "no_agreement"}
LABEL_FILES = ("Labels/labels_consensus.csv", "Labels/labels_concensus.csv")


class MspPodcastLoader(CorpusLoader):
    name = "msp-podcast"
    description = "MSP-Podcast: podcast segments, consensus labels, Split_Set partitions"
    markers = ("Audios", "Labels/labels_con*sus.csv")
    options = (
        CorpusOption("classes", str, "primary", "primary: A S H U F D C N; all: also O (other) and X (no agreement)"),
    )

    def emotions(self, options: dict[str, Any]) -> tuple[str, ...]:
        keep = self._codes(options)
        return tuple(EMOTIONS[c] for c in keep)

    @staticmethod
    def _codes(options: dict[str, Any]) -> tuple[str, ...]:
        if options["classes"] not in ("primary", "all"):
            raise CorpusError(f"--corpus-option classes={options['classes']}: use primary or all")
        return tuple(EMOTIONS) if options["classes"] == "all" else tuple("ASHUFDCN")

    def read(self, root: Path, options: dict[str, Any]) -> list[Utterance]:
        label_file = next((root / name for name in LABEL_FILES if (root / name).is_file()), None)
        if label_file is None:
            raise CorpusError(f"msp-podcast: neither {' nor '.join(LABEL_FILES)} exists under {root}")
        keep = self._codes(options)
        genders = {"male": "male", "female": "female"}
        utterances = []
        with label_file.open(newline="") as handle:
            reader = csv.DictReader(handle)
            missing = {"FileName", "EmoClass", "SpkrID", "Gender", "Split_Set"} - set(reader.fieldnames or [])
            if missing:
                raise CorpusError(f"msp-podcast: {label_file.name} lacks column(s) {', '.join(sorted(missing))}")
            left_out: Counter[str] = Counter()
            for row in reader:
                speaker, gender = (row["SpkrID"] or "").strip(), genders.get((row["Gender"] or "").strip().lower())
                emotion = (row["EmoClass"] or "").strip()
                if speaker.lower() in ("unknown", "") or gender is None:
                    left_out["an Unknown speaker or gender"] += 1
                    continue
                if emotion not in keep:
                    left_out[f"an EmoClass outside classes={options['classes']}"] += 1
                    continue
                path = root / "Audios" / row["FileName"].strip()
                utterances.append(
                    Utterance(
                        id=Path(row["FileName"].strip()).stem, path=path, speaker=speaker, gender=gender,
                        emotion=EMOTIONS[emotion], session=(row["Split_Set"] or "").strip(),
                        extra={k: row[k] for k in ("EmoAct", "EmoVal", "EmoDom") if row.get(k)},
                    )
                )
        if not utterances and left_out:
            reasons = "; ".join(f"{count} with {reason}" for reason, count in left_out.items())
            raise CorpusError(f"msp-podcast: every row of {label_file} was left out ({reasons}); speaker-disjoint folds "
                              "need known speakers and genders" + ("" if options["classes"] == "all" else
                                                                   ", and --corpus-option classes=all keeps O and X"))
        return utterances


LOADER = MspPodcastLoader()
