"""The transcribed preset (librispeech-like) and the ``text`` column every manifest may carry."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import numpy as np
import soundfile

from ser_audit.corpus.manifest import load_manifest
from ser_audit.corpus.registry import list_corpora
from ser_audit.corpus.synthetic.presets import IEMOCAP_LIKE, LIBRISPEECH_LIKE, MANIFEST_NAME, plan_corpus, write_corpus
from ser_audit.corpus.synthetic.voice import CONSONANT_SYMBOLS, VOWEL_SYMBOLS, WORD_BOUNDARY, transcript


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_librispeech_like_has_many_speakers_a_speaker_disjoint_test_part_and_one_sentence_per_utterance() -> None:
    rows = plan_corpus(LIBRISPEECH_LIKE, seed=0)
    speakers = {row["speaker"].id: (row["speaker"].gender, row["session"]) for row in rows}
    assert len(speakers) == 48 and Counter(g for g, _ in speakers.values()) == {"female": 24, "male": 24}
    assert Counter(s for _, s in speakers.values()) == {"train": 40, "test": 8}
    assert len({row["sentence"] for row in rows}) == len(rows)  # every utterance reads a new sentence
    assert {row["emotion"] for row in rows} == {"neutral"}
    assert "librispeech-like" in {row["name"] for row in list_corpora()}


def test_transcripts_are_the_syllable_plan_deterministic_and_in_the_manifest(tmp_path: Path) -> None:
    write_corpus(LIBRISPEECH_LIKE, tmp_path / "a", seed=3, per_speaker=2)
    write_corpus(LIBRISPEECH_LIKE, tmp_path / "b", seed=3, per_speaker=2)
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    corpus = load_manifest(tmp_path / "a" / MANIFEST_NAME)
    symbols = set(VOWEL_SYMBOLS) | set(CONSONANT_SYMBOLS) | {WORD_BOUNDARY}
    texts = [u.text for u in corpus]
    assert all(text and set(text) <= symbols and not text.startswith(" ") and not text.endswith(" ") for text in texts)
    assert len(set(texts)) > len(texts) * 0.9  # varied sentences
    for utterance in corpus:
        vowels = sum(symbol in VOWEL_SYMBOLS for symbol in utterance.text or "")
        fewest, most = LIBRISPEECH_LIKE.syllables
        assert fewest <= vowels <= most  # one vowel per syllable
    # The manifest's own column, as written.
    with open(tmp_path / "a" / MANIFEST_NAME, newline="", encoding="utf-8") as handle:
        assert [row["text"] for row in csv.DictReader(handle)] == texts
    durations = [soundfile.info(str(u.path)).duration for u in corpus]
    assert np.median(durations) < 2.5  # short enough to fit the ASR's 3 s input whole


def test_a_syllable_plan_spells_consonant_then_vowel_with_spaces_between_words() -> None:
    text = transcript(7, 6)
    assert sum(symbol in VOWEL_SYMBOLS for symbol in text) == 6
    assert all(word[-1] in VOWEL_SYMBOLS for word in text.split(WORD_BOUNDARY))  # words end on a vowel


def test_untranscribed_presets_keep_their_manifest(tmp_path: Path) -> None:
    manifest = write_corpus(IEMOCAP_LIKE, tmp_path / "iemocap", seed=0, per_speaker=2)
    assert "text" not in manifest.read_text().splitlines()[0].split(",")
    corpus = load_manifest(manifest)
    assert all(u.text is None and "text" not in u.manifest_row() for u in corpus)


def test_any_manifest_may_carry_a_text_column(tmp_path: Path) -> None:
    soundfile.write(tmp_path / "a.wav", np.zeros(1600, dtype=np.float32), 16_000)
    soundfile.write(tmp_path / "b.wav", np.zeros(1600, dtype=np.float32), 16_000)
    (tmp_path / "m.csv").write_text("path,speaker,gender,emotion,text\na.wav,s1,f,neutral,hello there\nb.wav,s2,m,sad,\n")
    first, second = load_manifest(tmp_path / "m.csv")
    assert first.text == "hello there" and "text" not in first.extra and second.text is None
    (tmp_path / "m.jsonl").write_text('{"path": "a.wav", "speaker": "s1", "gender": "f", "emotion": "neutral", "text": "hi"}\n')
    assert load_manifest(tmp_path / "m.jsonl").utterances[0].text == "hi"
