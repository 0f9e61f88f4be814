from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import corpus_fixtures as fixtures
import pytest

from ser_audit.corpus.folds import speaker_disjoint_folds
from ser_audit.corpus.registry import corpus_loaders, resolve_corpus
from ser_audit.errors import ConfigError, CorpusError


def load(name: str, root: Path | None, *options: str):
    return resolve_corpus(name, cache_dir=Path("/nonexistent"), corpus_root=root, options=options)


def counts(corpus) -> tuple[int, int, dict, dict]:
    return (len(corpus), len(corpus.speakers), dict(Counter(u.gender for u in corpus)),
            dict(Counter(u.emotion for u in corpus)))


def test_every_loader_is_registered() -> None:
    assert {"iemocap", "ravdess", "crema-d", "emodb", "demos", "msp-podcast"} <= set(corpus_loaders(strict=True))


def test_iemocap_takes_the_speaker_from_the_last_underscore(tmp_path: Path) -> None:
    corpus = load("iemocap", fixtures.iemocap(tmp_path / "IEMOCAP"))
    assert counts(corpus) == (30, 10, {"female": 15, "male": 15}, {"neutral": 10, "angry": 5, "sad": 10, "happy": 5})
    by_id = {u.id: u for u in corpus}
    trap = by_id["Ses01F_impro01_M000"]  # prefix F, spoken by the male actor
    assert (trap.speaker, trap.gender, trap.spontaneity) == ("Ses01M", "male", "improvised")
    assert by_id["Ses02M_script01_1_F000"].gender == "female"
    assert by_id["Ses02M_script01_1_F000"].sentence == by_id["Ses03M_script01_1_F000"].sentence
    folds = speaker_disjoint_folds(corpus)
    assert [f.name for f in folds] == [f"session=Session{i}" for i in range(1, 6)]


def test_iemocap_options(tmp_path: Path) -> None:
    root = fixtures.iemocap(tmp_path / "IEMOCAP")
    merged = load("iemocap", root, "merge_excited=true")
    assert len(merged) == 35 and Counter(u.emotion for u in merged)["happy"] == 10
    by_speaker = load("iemocap", root, "folds=speaker")
    assert len(speaker_disjoint_folds(by_speaker)) == 10
    with pytest.raises(ConfigError, match="merge_excited, folds"):
        load("iemocap", root, "colour=blue")
    with pytest.raises(ConfigError, match="true or false"):
        load("iemocap", root, "merge_excited=perhaps")


def test_ravdess(tmp_path: Path) -> None:
    corpus = load("ravdess", fixtures.ravdess(tmp_path / "RAVDESS"))
    emotions = {e: 24 for e in ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")}
    assert counts(corpus) == (192, 24, {"female": 96, "male": 96}, emotions)
    assert {u.sentence for u in corpus} == {"statement01", "statement02"}
    assert all(u.gender == ("male" if int(u.speaker[-2:]) % 2 else "female") for u in corpus)


def test_ravdess_parity_must_agree_with_demographics(tmp_path: Path) -> None:
    root = fixtures.ravdess(tmp_path / "RAVDESS")
    demographics = tmp_path / "actors.csv"
    demographics.write_text("actor,gender\n1,male\n2,male\n")
    with pytest.raises(CorpusError, match="actor 02 is female"):
        load("ravdess", root, f"demographics={demographics}")


def test_crema_d_joins_demographics_and_skips_the_silent_file(tmp_path: Path) -> None:
    corpus = load("crema-d", fixtures.crema_d(tmp_path / "CREMA-D"))
    assert counts(corpus) == (15, 5, {"male": 6, "female": 9}, {"angry": 5, "neutral": 5, "happy": 5})
    assert "1076_MTI_SAD_XX" not in {u.id for u in corpus}


def test_crema_d_actor_missing_from_demographics(tmp_path: Path) -> None:
    root = fixtures.crema_d(tmp_path / "CREMA-D")
    fixtures.tone(root / "AudioWAV" / "1099_IEO_ANG_HI.wav")
    with pytest.raises(CorpusError, match="actor 1099"):
        load("crema-d", root)


def test_crema_d_demographics_from_a_spreadsheet(tmp_path: Path) -> None:
    """Re-saved from a spreadsheet: a byte-order mark before ActorID is read; a renamed column is named."""
    root = fixtures.crema_d(tmp_path / "CREMA-D")
    table = root / "VideoDemographics.csv"
    text = table.read_text()
    table.write_text(text, encoding="utf-8-sig")
    assert len(load("crema-d", root)) == 15
    table.write_text(text.replace("Sex", "Gender"))
    with pytest.raises(CorpusError, match="lacks the column.s. Sex"):
        load("crema-d", root)


def test_iemocap_session_without_its_wav_folder(tmp_path: Path) -> None:
    root = fixtures.iemocap(tmp_path / "IEMOCAP")
    shutil.rmtree(root / "Session3" / "sentences" / "wav")
    with pytest.raises(CorpusError, match="Session3/sentences/wav is missing"):
        load("iemocap", root)


@pytest.mark.parametrize(("table", "message"), [
    ("actor,gender\nActor_01,male\nActor_02,female\n", None),
    ("id,sex\n1,male\n", "lacks the column.s. actor, gender"),
    ("actor,gender\nfirst,male\n", "row 2: actor 'first'"),
])
def test_ravdess_demographics_spellings(tmp_path: Path, table: str, message: str | None) -> None:
    root = fixtures.ravdess(tmp_path / "RAVDESS")
    demographics = tmp_path / "actors.csv"
    demographics.write_text(table)
    if message is None:
        assert len(load("ravdess", root, f"demographics={demographics}")) == 192
    else:
        with pytest.raises(CorpusError, match=message):
            load("ravdess", root, f"demographics={demographics}")


def test_emodb(tmp_path: Path) -> None:
    corpus = load("emodb", fixtures.emodb(tmp_path / "emodb"))
    assert counts(corpus) == (12, 4, {"male": 6, "female": 6}, {"angry": 4, "neutral": 4, "sad": 4})
    assert {u.sentence for u in corpus} == {"a01", "a02", "b01"}


def test_demos(tmp_path: Path) -> None:
    root = fixtures.demos(tmp_path / "DEMoS")
    corpus = load("demos", root)
    assert counts(corpus) == (12, 3, {"female": 4, "male": 8}, {"angry": 3, "sad": 3, "guilt": 3, "neutral": 3})
    assert {u.extra.get("prototypical") for u in corpus if u.emotion != "neutral"} == {True, False}
    assert len(load("demos", root, "include_neutral=false")) == 9


@pytest.mark.parametrize("label_file", ["labels_consensus.csv", "labels_concensus.csv"])
def test_msp_podcast(tmp_path: Path, label_file: str) -> None:
    corpus = load("msp-podcast", fixtures.msp_podcast(tmp_path / "MSP", label_file=label_file))
    assert counts(corpus) == (4, 3, {"male": 2, "female": 2}, {"angry": 1, "neutral": 1, "happy": 1, "sad": 1})
    assert "Unknown" not in corpus.speakers
    assert {u.session for u in corpus} == {"Train", "Development", "Test1"}
    assert len(load("msp-podcast", tmp_path / "MSP", "classes=all")) == 5


def test_msp_podcast_with_every_row_left_out_says_why(tmp_path: Path) -> None:
    root = fixtures.msp_podcast(tmp_path / "MSP")
    labels = root / "Labels" / "labels_concensus.csv"
    lines = labels.read_text().splitlines()
    labels.write_text("\n".join([lines[0], *(",".join([*line.split(",")[:5], "Unknown", *line.split(",")[6:]])
                                             for line in lines[1:])]) + "\n")
    with pytest.raises(CorpusError, match="every row .* was left out .6 with an Unknown speaker or gender"):
        load("msp-podcast", root)


def test_msp_podcast_reads_padded_values(tmp_path: Path) -> None:
    root = fixtures.msp_podcast(tmp_path / "MSP")
    labels = root / "Labels" / "labels_concensus.csv"
    labels.write_text(labels.read_text().replace(",A,", ", A,").replace(",Train", ", Train "))
    corpus = load("msp-podcast", root)
    assert "angry" in {u.emotion for u in corpus} and "Train" in {u.session for u in corpus}


def test_root_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fixtures.emodb(tmp_path / "emodb")
    monkeypatch.setenv("SER_AUDIT_DATA", str(tmp_path))
    assert len(load("emodb", None)) == 12
    monkeypatch.delenv("SER_AUDIT_DATA")
    with pytest.raises(ConfigError, match="--corpus-root"):
        load("emodb", None)


def test_wrong_other_and_half_copied_roots(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="is not a folder"):
        load("iemocap", tmp_path / "nowhere")
    ravdess = fixtures.ravdess(tmp_path / "RAVDESS")
    with pytest.raises(CorpusError, match="does not look like iemocap: missing Session"):
        load("iemocap", ravdess)
    root = fixtures.iemocap(tmp_path / "IEMOCAP")
    (root / "Session3/sentences/wav/Ses03F_impro01/Ses03F_impro01_M001.wav").unlink()
    with pytest.raises(CorpusError, match="Ses03F_impro01_M001.wav is missing"):
        load("iemocap", root)
    (root / "Session4/dialog/EmoEvaluation/Ses04M_script01_1.txt").unlink()
    shutil.copy(root / "Session1/sentences/wav/Ses01F_impro01/Ses01F_impro01_F000.wav",
                root / "Session3/sentences/wav/Ses03F_impro01/Ses03F_impro01_M001.wav")
    with pytest.raises(CorpusError, match="label file .*Ses04M_script01_1.txt is missing"):
        load("iemocap", root)


def test_drifting_sample_rate_is_named(tmp_path: Path) -> None:
    root = fixtures.ravdess(tmp_path / "RAVDESS")
    odd = root / "Actor_05" / "03-01-04-01-01-01-05.wav"
    fixtures.tone(odd, rate=44_100)
    with pytest.raises(CorpusError, match="03-01-04-01-01-01-05.wav is at 44100 Hz"):
        load("ravdess", root)


def test_sentence_disjoint_control(tmp_path: Path) -> None:
    corpus = load("emodb", fixtures.emodb(tmp_path / "emodb"))
    folds = speaker_disjoint_folds(corpus, n_folds=2, sentence_disjoint=True)
    assert len(folds) == 2
    for fold in folds:
        test_sentences = {corpus.utterances[i].sentence for i in fold.test}
        train_sentences = {corpus.utterances[i].sentence for i in fold.train}
        assert test_sentences and train_sentences and not test_sentences & train_sentences
        assert not {corpus.utterances[i].speaker for i in fold.test} & {corpus.utterances[i].speaker for i in fold.train}
    with pytest.raises(ConfigError, match="no sentence ids"):
        speaker_disjoint_folds(load("demos", fixtures.demos(tmp_path / "demos")), n_folds=2, sentence_disjoint=True)


def test_corpus_info_cli(run_cli, tmp_path: Path) -> None:
    root = fixtures.iemocap(tmp_path / "IEMOCAP")
    result = run_cli("corpus", "info", "iemocap", "--corpus-root", str(root), "--json")
    assert result.code == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["n_utterances"] == 30 and info["by_gender"] == {"female": 15, "male": 15}
    assert info["audio"]["sample_rates"] == {"16000": 30}
    table = run_cli("corpus", "info", "iemocap", "--corpus-root", str(root))
    assert "merge_excited" in table.stdout


def test_corpus_info_on_a_file_that_is_not_audio_gives_exit_2(run_cli, tmp_path: Path) -> None:
    fixtures.tone(tmp_path / "a.wav")
    (tmp_path / "b.wav").write_bytes(b"this is not a wave file at all" * 10)
    (tmp_path / "m.csv").write_text("path,speaker,gender,emotion\na.wav,s1,f,sad\nb.wav,s2,m,sad\n")
    result = run_cli("corpus", "info", str(tmp_path / "m.csv"))
    assert result.code == 2, result.stderr
    assert "b.wav cannot be decoded" in result.stderr and "Traceback" not in result.stderr



def test_bad_roots_give_exit_2_and_say_what_is_missing(run_cli, tmp_path: Path) -> None:
    iemocap = fixtures.iemocap(tmp_path / "IEMOCAP")
    (iemocap / "Session2/sentences/wav/Ses02M_script01_1/Ses02M_script01_1_F001.wav").unlink()
    cases = [
        (tmp_path / "missing", "is not a folder"),
        (fixtures.emodb(tmp_path / "emodb"), "missing Session*/sentences/wav"),
        (iemocap, "Ses02M_script01_1_F001.wav is missing"),
    ]
    for root, message in cases:
        result = run_cli("leakage", "zoo:cnn4", "--corpus", "iemocap", "--corpus-root", str(root), "--quiet")
        assert result.code == 2, result.stderr
        assert message in result.stderr and result.stderr.count("\n") == 1
