"""Fixture trees that copy each real corpus's folder layout and file naming, with short synthetic audio."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import soundfile


def tone(path: Path, *, rate: int = 16_000, seconds: float = 0.4, frequency: float = 150.0, channels: int = 1,
         silent: bool = False) -> None:
    t = np.arange(int(rate * seconds)) / rate
    signal = np.zeros_like(t) if silent else 0.2 * np.sign(np.sin(2 * np.pi * frequency * t)) + 0.01 * np.sin(t * 999)
    data = np.stack([signal] * channels, axis=1) if channels > 1 else signal
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), data, rate, subtype="PCM_16")


def iemocap(root: Path) -> Path:
    """5 sessions; in each, an improvised dialog whose PREFIX letter is F but whose turns alternate
    speakers, and a scripted dialog with prefix M. Labels include classes outside the four."""
    for session in range(1, 6):
        dialogs = {
            f"Ses0{session}F_impro01": [("F000", "neu"), ("M000", "ang"), ("F001", "exc"), ("M001", "sad"), ("F002", "fru")],
            f"Ses0{session}M_script01_1": [("F000", "hap"), ("M000", "neu"), ("M001", "xxx"), ("F001", "sad")],
        }
        for dialog, turns in dialogs.items():
            lines = []
            for k, (turn, code) in enumerate(turns):
                utterance = f"{dialog}_{turn}"
                frequency = 210.0 if turn[0] == "F" else 115.0
                tone(root / f"Session{session}/sentences/wav/{dialog}/{utterance}.wav", frequency=frequency + session)
                lines.append(f"[{k * 2.0:.4f} - {k * 2.0 + 1.5:.4f}]\t{utterance}\t{code}\t[2.5000, 2.5000, 2.5000]")
            labels = root / f"Session{session}/dialog/EmoEvaluation/{dialog}.txt"
            labels.parent.mkdir(parents=True, exist_ok=True)
            labels.write_text("% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n" + "\n\n".join(lines) + "\n")
    return root


def ravdess(root: Path, *, rate: int = 48_000) -> Path:
    for actor in range(1, 25):
        for emotion in range(1, 9):
            name = f"03-01-{emotion:02d}-01-{1 + emotion % 2:02d}-01-{actor:02d}.wav"
            tone(root / f"Actor_{actor:02d}" / name, rate=rate, frequency=(120 if actor % 2 else 210) + emotion)
        tone(root / f"Actor_{actor:02d}" / f"03-02-03-01-01-01-{actor:02d}.wav", rate=rate)  # song: skipped
        tone(root / f"Actor_{actor:02d}" / f"01-01-03-01-01-01-{actor:02d}.wav", rate=rate)  # video: skipped
    return root


def crema_d(root: Path) -> Path:
    actors = {"1001": "Male", "1002": "Female", "1003": "Female", "1004": "Male", "1076": "Female"}
    root.mkdir(parents=True, exist_ok=True)
    with (root / "VideoDemographics.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["ActorID", "Age", "Sex", "Race", "Ethnicity"])
        for actor, sex in actors.items():
            writer.writerow([actor, 30, sex, "Caucasian", "Not Hispanic"])
    for actor in actors:
        for sentence, emotion in (("IEO", "ANG"), ("TIE", "NEU"), ("MTI", "HAP")):
            tone(root / "AudioWAV" / f"{actor}_{sentence}_{emotion}_XX.wav", frequency=150)
    tone(root / "AudioWAV" / "1076_MTI_SAD_XX.wav", silent=True)
    return root


def emodb(root: Path) -> Path:
    for speaker in ("03", "08", "09", "10"):
        for text, emotion in (("a01", "W"), ("a02", "N"), ("b01", "T")):
            tone(root / "wav" / f"{speaker}{text}{emotion}a.wav")
    return root


def demos(root: Path) -> Path:
    for gender, speaker in (("f", "01"), ("m", "02"), ("m", "03")):
        for prefix, emotion in (("PR", "rab"), ("NP", "tri"), ("PR", "col")):
            tone(root / "DEMOS" / f"{prefix}_{gender}_{speaker}_{emotion}01a.wav")
        tone(root / "NEU" / f"NEU_{gender}_{speaker}_neu01a.wav")
    return root


def msp_podcast(root: Path, *, label_file: str = "labels_concensus.csv") -> Path:
    rows = [
        ("MSP-PODCAST_0001_0001.wav", "A", "101", "Male", "Train"),
        ("MSP-PODCAST_0001_0002.wav", "N", "101", "Male", "Train"),
        ("MSP-PODCAST_0002_0001.wav", "H", "202", "Female", "Development"),
        ("MSP-PODCAST_0002_0002.wav", "X", "202", "Female", "Development"),
        ("MSP-PODCAST_0003_0001.wav", "S", "Unknown", "Female", "Test1"),
        ("MSP-PODCAST_0004_0001.wav", "S", "303", "Female", "Test1"),
    ]
    (root / "Labels").mkdir(parents=True, exist_ok=True)
    with (root / "Labels" / label_file).open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["FileName", "EmoClass", "EmoAct", "EmoVal", "EmoDom", "SpkrID", "Gender", "Split_Set"])
        for name, emotion, speaker, gender, split in rows:
            writer.writerow([name, emotion, 4.0, 4.0, 4.0, speaker, gender, split])
    for name, *_ in rows:
        tone(root / "Audios" / name)
    tone(root / "Audios" / "MSP-PODCAST_0004_0001.wav", rate=44_100, channels=2)  # the odd one out
    return root
