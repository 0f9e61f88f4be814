"""IEMOCAP (Busso et al., 2008): 5 sessions, each one male and one female actor.

Layout: ``Session{1-5}/sentences/wav/<dialog>/<utterance>.wav``; labels in
``Session*/dialog/EmoEvaluation/<dialog>.txt`` on lines ``[t0 - t1]\\t<utterance>\\t<emo>\\t[V, A, D]``.

The speaker is the session plus the letter after the LAST underscore of the utterance id
(``Ses01F_impro01_M000`` is spoken by Ses01's male actor). The letter in the prefix names
the actor wearing the motion-capture markers during the dialog, not the speaker of the turn;
reading the prefix gives about half the utterances the wrong speaker and gender.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ser_audit.corpus.interface import Utterance
from ser_audit.corpus.loader import CorpusLoader, CorpusOption
from ser_audit.errors import CorpusError

_LABEL_LINE = re.compile(r"^\[\s*[\d.]+\s*-\s*[\d.]+\s*\]\s+(\S+)\s+(\S+)\s+\[")
_FOUR_CLASSES = {"neu": "neutral", "hap": "happy", "sad": "sad", "ang": "angry"}


def speaker_of(utterance_id: str) -> tuple[str, str]:
    """(speaker id, gender) from the letter after the last underscore."""
    letter = utterance_id.rsplit("_", 1)[-1][:1]
    if letter not in ("F", "M"):
        raise CorpusError(f"IEMOCAP utterance id {utterance_id!r} does not end in _F### or _M###")
    return f"{utterance_id[:5]}{letter}", "female" if letter == "F" else "male"


class IemocapLoader(CorpusLoader):
    name = "iemocap"
    description = "IEMOCAP: 5 sessions x 2 actors; 4 classes (neutral/happy/sad/angry), excited merge optional"
    markers = ("Session*/sentences/wav", "Session*/dialog/EmoEvaluation")
    sample_rate = 16_000
    options = (
        CorpusOption("merge_excited", bool, False, "count 'exc' (excited) as happy (5531 utterances instead of 4490)"),
        CorpusOption("folds", str, "session", "session: leave-one-session-out (5); speaker: leave-one-speaker-out (10)"),
    )

    def emotions(self, options: dict[str, Any]) -> tuple[str, ...]:
        return tuple(_FOUR_CLASSES.values())

    def read(self, root: Path, options: dict[str, Any]) -> list[Utterance]:
        if options["folds"] not in ("session", "speaker"):
            raise CorpusError(f"--corpus-option folds={options['folds']}: use session or speaker")
        classes = dict(_FOUR_CLASSES, **({"exc": "happy"} if options["merge_excited"] else {}))
        utterances = []
        for session in sorted(root.glob("Session[1-5]")):
            wav_root = session / "sentences" / "wav"
            if not wav_root.is_dir():
                raise CorpusError(f"iemocap: {wav_root} is missing; the copy is incomplete (every SessionN needs "
                                  "sentences/wav and dialog/EmoEvaluation)")
            for dialog in sorted(p for p in wav_root.iterdir() if p.is_dir()):
                labels = session / "dialog" / "EmoEvaluation" / f"{dialog.name}.txt"
                if not labels.is_file():
                    raise CorpusError(f"iemocap: label file {labels} is missing for dialog {dialog.name}; the copy is incomplete")
                for utterance_id, code in _read_labels(labels):
                    if code not in classes:
                        continue
                    speaker, gender = speaker_of(utterance_id)
                    path = dialog / f"{utterance_id}.wav"
                    if not path.is_file():
                        raise CorpusError(
                            f"iemocap: {labels.name} labels {utterance_id} but {path} is missing; the copy is incomplete"
                        )
                    scripted = "_script" in dialog.name
                    utterances.append(
                        Utterance(
                            id=utterance_id,
                            path=path,
                            speaker=speaker,
                            gender=gender,
                            emotion=classes[code],
                            session=speaker if options["folds"] == "speaker" else session.name,
                            spontaneity="scripted" if scripted else "improvised",
                            # Scripted turns of one script line share text across sessions.
                            sentence=utterance_id[7:] if scripted else None,
                            extra={"dialog": dialog.name, "label": code},
                        )
                    )
        return utterances


def _read_labels(path: Path) -> list[tuple[str, str]]:
    rows = []
    for line in path.read_text(errors="replace").splitlines():
        match = _LABEL_LINE.match(line)
        if match:
            rows.append((match.group(1), match.group(2)))
    return rows


LOADER = IemocapLoader()
