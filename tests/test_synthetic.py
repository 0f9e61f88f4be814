from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import soundfile

from ser_audit.corpus.synthetic.presets import (
    IEMOCAP_LIKE,
    MANIFEST_NAME,
    RAVDESS_LIKE,
    VOXCELEB_LIKE,
    plan_corpus,
    synthetic_corpus,
    write_corpus,
)


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_same_seed_gives_byte_identical_audio(tmp_path: Path) -> None:
    write_corpus(IEMOCAP_LIKE, tmp_path / "a", seed=7, per_speaker=2)
    write_corpus(IEMOCAP_LIKE, tmp_path / "b", seed=7, per_speaker=2)
    first, second = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert len(first) == 21  # 20 WAV files and the manifest
    assert first == second


def test_other_seed_gives_other_audio(tmp_path: Path) -> None:
    write_corpus(IEMOCAP_LIKE, tmp_path / "a", seed=1, per_speaker=2)
    write_corpus(IEMOCAP_LIKE, tmp_path / "b", seed=2, per_speaker=2)
    a = _files(tmp_path / "a")
    b = _files(tmp_path / "b")
    differing = [name for name in a if name.endswith(".wav") and a[name] != b.get(name)]
    assert len(differing) == 20


def test_iemocap_like_has_ten_speakers_and_p0_class_proportions() -> None:
    rows = plan_corpus(IEMOCAP_LIKE, seed=0)
    speakers = {row["speaker"].id: row["speaker"].gender for row in rows}
    assert len(speakers) == 10
    assert Counter(speakers.values()) == {"male": 5, "female": 5}
    assert {row["session"] for row in rows} == {f"Ses0{i}" for i in range(1, 6)}
    p0 = {"neutral": 1708, "angry": 1103, "sad": 1084, "happy": 595}
    counts = Counter(row["emotion"] for row in rows)
    for emotion, count in p0.items():
        assert abs(counts[emotion] / len(rows) - count / sum(p0.values())) < 0.02
    assert {row["spontaneity"] for row in rows} == {"improvised", "scripted"}


def test_ravdess_like_has_24_actors_odd_male() -> None:
    rows = plan_corpus(RAVDESS_LIKE, seed=0)
    speakers = {row["speaker"].id: row["speaker"].gender for row in rows}
    assert len(speakers) == 24
    assert all((gender == "male") == (int(sid[-2:]) % 2 == 1) for sid, gender in speakers.items())
    assert len({row["emotion"] for row in rows}) == 8
    assert len({row["sentence"] for row in rows}) == 2


def test_voxceleb_like_is_a_speaker_id_corpus_with_shared_channels_and_a_wide_trait_spread() -> None:
    rows = plan_corpus(VOXCELEB_LIKE, seed=0)
    speakers = {row["speaker"].id: row["speaker"] for row in rows}
    assert len(speakers) >= 50 and Counter(s.gender for s in speakers.values()) == {"female": 25, "male": 25}
    assert {row["emotion"] for row in rows} == {"neutral"} and {row["session"] for row in rows} == {None}
    # Every speaker is heard on several channels, and every channel carries several speakers.
    channels_of = {sid: {row["channel"] for row in rows if row["speaker"].id == sid} for sid in speakers}
    assert min(len(c) for c in channels_of.values()) >= 5 and len({row["channel"] for row in rows}) == 6
    iemocap = {row["speaker"].id: row["speaker"] for row in plan_corpus(IEMOCAP_LIKE, seed=0)}.values()

    def spread(traits, gender):
        return np.std(np.log([s.f0_hz for s in traits if s.gender == gender]))

    assert all(spread(speakers.values(), g) > 1.3 * spread(iemocap, g) for g in ("female", "male"))


def test_speaker_traits_overlap_between_genders_but_differ_on_average() -> None:
    rows = plan_corpus(IEMOCAP_LIKE, seed=3)
    traits = {row["speaker"].id: row["speaker"] for row in rows}.values()
    male = [s.f0_hz for s in traits if s.gender == "male"]
    female = [s.f0_hz for s in traits if s.gender == "female"]
    assert np.mean(female) > 1.4 * np.mean(male)


def test_corpus_is_cached_and_audio_is_plausible(tmp_path: Path) -> None:
    corpus = synthetic_corpus("iemocap-like", cache_dir=tmp_path, seed=0, per_speaker=2)
    manifest = next(tmp_path.rglob(MANIFEST_NAME))
    stamp = manifest.stat().st_mtime_ns
    again = synthetic_corpus("iemocap-like", cache_dir=tmp_path, seed=0, per_speaker=2)
    assert manifest.stat().st_mtime_ns == stamp
    assert [u.id for u in corpus] == [u.id for u in again]
    audio, rate = soundfile.read(str(corpus.utterances[0].path))
    assert rate == 16_000
    assert 1.0 < len(audio) / rate < 6.0
    assert 0.01 < np.sqrt(np.mean(audio**2)) < 0.5


def test_a_synthetic_corpus_takes_a_seed_option_for_other_voices(monkeypatch, tmp_path: Path) -> None:
    """The report's seen-speakers note says '--corpus-option seed=N'; it was refused for synthetic corpora."""
    import pytest

    from ser_audit.corpus import registry
    from ser_audit.errors import ConfigError

    drawn: list[int] = []
    monkeypatch.setattr(registry, "synthetic_corpus", lambda name, *, cache_dir, seed, observer: drawn.append(seed))
    registry.resolve_corpus("synthetic", cache_dir=tmp_path, seed=0, options=["seed=3"])
    registry.resolve_corpus("ravdess-like", cache_dir=tmp_path, seed=5)
    assert drawn == [3, 5]
    with pytest.raises(ConfigError, match="takes only seed=N"):
        registry.resolve_corpus("synthetic", cache_dir=tmp_path, seed=0, options=["speakers=4"])


def test_corpus_synth_takes_the_default_corpus_name() -> None:
    from ser_audit.corpus.synthetic.presets import get_preset

    assert get_preset("synthetic") is IEMOCAP_LIKE  # `corpus list` shows it as the alias it is
