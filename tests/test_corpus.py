from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile

from ser_audit.corpus.audio import read_audio
from ser_audit.corpus.folds import Fold, assert_speaker_disjoint, speaker_disjoint_folds
from ser_audit.corpus.interface import Corpus, Utterance
from ser_audit.corpus.manifest import load_manifest
from ser_audit.errors import CorpusError


def _tone(path: Path, rate: int = 16_000, seconds: float = 0.5, channels: int = 1) -> Path:
    t = np.arange(int(rate * seconds)) / rate
    signal = 0.3 * np.sin(2 * np.pi * 220 * t)
    data = np.stack([signal] * channels, axis=1) if channels > 1 else signal
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), data, rate)
    return path


def _manifest(folder: Path, rows: list[dict]) -> Path:
    path = folder / "manifest.csv"
    columns = ["path", "speaker", "gender", "emotion"]
    path.write_text("\n".join([",".join(columns), *(",".join(str(r[c]) for c in columns) for r in rows)]) + "\n")
    return path


def test_stereo_44k_is_downmixed_and_resampled(tmp_path: Path) -> None:
    path = _tone(tmp_path / "stereo.wav", rate=44_100, seconds=1.0, channels=2)
    audio = read_audio(path, 16_000)
    assert audio.ndim == 1
    assert abs(len(audio) - 16_000) <= 1
    spectrum = np.abs(np.fft.rfft(audio))
    assert abs(np.argmax(spectrum) * 16_000 / len(audio) - 220) < 2


@pytest.mark.parametrize("content, message", [(b"", "empty"), (b"RIFF not really a wave file", "cannot be decoded")])
def test_bad_audio_files_raise(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(CorpusError, match=message):
        read_audio(path, 16_000)


def test_missing_audio_raises(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="does not exist"):
        read_audio(tmp_path / "nowhere.wav", 16_000)


def test_manifest_loads_and_normalises_gender(tmp_path: Path) -> None:
    _tone(tmp_path / "a.wav")
    _tone(tmp_path / "b.wav")
    manifest = _manifest(tmp_path, [
        {"path": "a.wav", "speaker": "s1", "gender": "F", "emotion": "Happy"},
        {"path": "b.wav", "speaker": "s2", "gender": "m", "emotion": "sad"},
    ])
    corpus = load_manifest(manifest)
    assert [u.gender for u in corpus] == ["female", "male"]
    assert [u.emotion for u in corpus] == ["happy", "sad"]
    assert corpus.utterances[0].path == (tmp_path / "a.wav").resolve()


def test_jsonl_manifest_keeps_extra_metadata(tmp_path: Path) -> None:
    _tone(tmp_path / "a.wav")
    path = tmp_path / "m.jsonl"
    path.write_text(json.dumps({"path": "a.wav", "speaker": "s", "gender": "female", "emotion": "neutral", "age": 31}) + "\n")
    corpus = load_manifest(path)
    assert corpus.utterances[0].extra == {"age": 31}


@pytest.mark.parametrize(
    "row, message",
    [
        ({"path": "missing.wav", "speaker": "s", "gender": "f", "emotion": "sad"}, "missing"),
        ({"path": "../outside.wav", "speaker": "s", "gender": "f", "emotion": "sad"}, "escapes"),
        ({"path": "a.wav", "speaker": "s", "gender": "x", "emotion": "sad"}, "not understood"),
        ({"path": "a.wav", "speaker": "", "gender": "f", "emotion": "sad"}, "empty 'speaker'"),
    ],
)
def test_manifest_rejects_bad_rows(tmp_path: Path, row: dict, message: str) -> None:
    folder = tmp_path / "corpus"
    _tone(folder / "a.wav")
    _tone(tmp_path / "outside.wav")
    with pytest.raises(CorpusError, match=message):
        load_manifest(_manifest(folder, [row]))


def test_manifest_rejects_absolute_path_outside(tmp_path: Path) -> None:
    outside = _tone(tmp_path / "elsewhere" / "x.wav")
    folder = tmp_path / "corpus"
    folder.mkdir()
    with pytest.raises(CorpusError, match="escapes"):
        load_manifest(_manifest(folder, [{"path": outside, "speaker": "s", "gender": "f", "emotion": "sad"}]))


def test_jsonl_manifest_keeps_zero_valued_folds_and_speakers(tmp_path: Path) -> None:
    """JSON folds and speaker ids numbered from 0: a 0 is a value, not a missing one."""
    rows = [{"path": f"{i}.wav", "speaker": i // 2, "gender": "female" if i < 2 else "male", "emotion": "sad",
             "fold": i % 2} for i in range(4)]
    for row in rows:
        _tone(tmp_path / row["path"])
    path = tmp_path / "m.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    corpus = load_manifest(path)
    assert [u.session for u in corpus] == ["0", "1", "0", "1"]
    assert [u.speaker for u in corpus] == ["0", "0", "1", "1"]


def test_manifest_ids_tell_apart_same_named_files_of_different_speakers(tmp_path: Path) -> None:
    rows = [{"path": f"{speaker}/001.wav", "speaker": speaker, "gender": gender, "emotion": "sad"}
            for speaker, gender in (("spk1", "f"), ("spk2", "m"))]
    for row in rows:
        _tone(tmp_path / row["path"])
    assert [u.id for u in load_manifest(_manifest(tmp_path, rows))] == ["spk1/001", "spk2/001"]
    _tone(tmp_path / "a.wav")
    assert [u.id for u in load_manifest(_manifest(tmp_path, [{**rows[0], "path": "a.wav"}]))] == ["a"]  # stems when unique


def test_semicolon_separated_csv_is_read(tmp_path: Path) -> None:
    _tone(tmp_path / "a.wav")
    path = tmp_path / "m.csv"
    path.write_text("path;speaker;gender;emotion\na.wav;s1;F;sad\n")
    assert [(u.speaker, u.gender) for u in load_manifest(path)] == [("s1", "female")]


def test_duplicate_ids_name_both_files_and_the_fix(tmp_path: Path) -> None:
    _tone(tmp_path / "a.wav")
    _tone(tmp_path / "b.wav")
    path = tmp_path / "m.csv"
    path.write_text("path,speaker,gender,emotion,id\na.wav,s1,f,sad,x\nb.wav,s2,m,sad,x\n")
    with pytest.raises(CorpusError, match=r"duplicate utterance id 'x' \(.*a\.wav and .*b\.wav\).*'id' column"):
        load_manifest(path)


def test_manifest_missing_column(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text("path,speaker,emotion\na.wav,s,sad\n")
    with pytest.raises(CorpusError, match="lacks column"):
        load_manifest(path)


def _fake_corpus(n_speakers: int, per_speaker: int = 4, sessions: bool = False) -> Corpus:
    utterances = [
        Utterance(
            id=f"s{s}_{i}", path=Path(f"/nowhere/s{s}_{i}.wav"), speaker=f"s{s}",
            gender="male" if s % 2 else "female", emotion="neutral",
            session=f"session{s // 2}" if sessions else None,
        )
        for s in range(n_speakers) for i in range(per_speaker)
    ]
    return Corpus("fake", utterances, Path("/nowhere"))


def test_leave_one_session_out_when_sessions_partition_speakers(small_corpus: Corpus) -> None:
    folds = speaker_disjoint_folds(small_corpus)
    assert [f.name for f in folds] == [f"session=Ses0{i}" for i in range(1, 6)]
    assert_speaker_disjoint(small_corpus, folds)
    for fold in folds:
        assert {small_corpus.utterances[i].gender for i in fold.test} == {"female", "male"}
    assert sorted(np.concatenate([f.test for f in folds]).tolist()) == list(range(len(small_corpus)))


def test_group_k_fold_is_speaker_disjoint_and_gender_stratified() -> None:
    corpus = _fake_corpus(24)
    folds = speaker_disjoint_folds(corpus, n_folds=4, seed=3)
    assert len(folds) == 4
    assert_speaker_disjoint(corpus, folds)
    for fold in folds:
        assert {corpus.utterances[i].gender for i in fold.test} == {"female", "male"}


def test_speaker_overlap_is_detected() -> None:
    corpus = _fake_corpus(4)
    leaky = [Fold("leaky", train=np.arange(0, 10), test=np.arange(6, 16))]
    with pytest.raises(CorpusError, match="both sides"):
        assert_speaker_disjoint(corpus, leaky)


def test_too_few_speakers_for_folds() -> None:
    with pytest.raises(CorpusError, match="too few"):
        speaker_disjoint_folds(_fake_corpus(3), n_folds=5)


def test_a_corpus_that_mixes_sample_rates_gets_a_note_and_a_warning_where_the_rate_follows_gender() -> None:
    from ser_audit.runner.preflight import rate_notes

    corpus = _fake_corpus(4)  # s0, s2 female; s1, s3 male
    one_rate = {u.id: 16_000 for u in corpus}
    assert rate_notes(corpus, one_rate, 16_000) == []
    by_gender = {u.id: 48_000 if u.gender == "female" else 16_000 for u in corpus}
    [note] = rate_notes(corpus, by_gender, 16_000)
    assert "mixes sample rates (16000 Hz: 8 file(s), 48000 Hz: 8 file(s))" in note and "one gender only" in note
    by_speaker = {u.id: 48_000 if u.speaker in ("s0", "s1") else 16_000 for u in corpus}
    [note] = rate_notes(corpus, by_speaker, 16_000)
    assert "resampled to the model's 16000 Hz" in note and "one gender only" not in note


def test_digitally_silent_utterances_get_a_note_from_the_pass_that_reads_them_and_from_the_cache(
        onnx_model: Path, tmp_path: Path) -> None:
    """A silent clip maps to one point in every layer whatever its speaker: the report says which ones, also when
    the embeddings come from the cache (no second decode)."""
    from ser_audit.api import leakage_audit
    from ser_audit.testing import tiny_corpus

    corpus = tiny_corpus(tmp_path / "corpus", per_speaker=4, seed=2)
    silent = [corpus.utterances[3], corpus.utterances[9]]
    for utterance in silent:
        rate = soundfile.info(str(utterance.path)).samplerate
        soundfile.write(str(utterance.path), np.zeros(rate, dtype=np.float32), rate)
    # A quiet voice is not silence: two 16-bit steps of amplitude.
    quiet = corpus.utterances[5]
    audio, rate = soundfile.read(str(quiet.path), dtype="float32")
    soundfile.write(str(quiet.path), audio / np.abs(audio).max() * 2 / 32768, rate, subtype="FLOAT")

    def notes() -> list[str]:
        report = leakage_audit(str(onnx_model), corpus=str(corpus.root / "manifest.csv"), layers="pool1", scenarios=[],
                               quick=True, cache_dir=tmp_path / "cache", aux_corpus=None)
        return [note for note in report.notes if "digitally silent" in note]

    first, cached = notes(), notes()
    assert len(first) == 1 and first == cached
    assert f"2 of {len(corpus)} utterances" in first[0] and silent[0].id in first[0] and silent[1].id in first[0]
    assert quiet.id not in first[0]
