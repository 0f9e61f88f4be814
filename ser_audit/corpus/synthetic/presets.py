"""Synthetic corpus presets that mirror the papers' pairing of an audit corpus and an attacker corpus."""

from __future__ import annotations

import csv
import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import stats

from ser_audit.corpus.audio import write_wav
from ser_audit.corpus.interface import Corpus
from ser_audit.corpus.synthetic.voice import (
    EMOTIONS,
    SAMPLE_RATE,
    Channel,
    Speaker,
    synthesise,
    transcript,
    with_expressiveness,
)
from ser_audit.errors import ConfigError
from ser_audit.files import publish
from ser_audit.progress import NULL_OBSERVER, ProgressObserver

# Bump when synthesis changes so cached corpora are rebuilt.
SYNTH_VERSION = 4
MANIFEST_NAME = "manifest.csv"
MANIFEST_COLUMNS = ("id", "path", "speaker", "gender", "emotion", "session", "spontaneity", "sentence")
# Transcribed presets add the text of each utterance (the other presets' manifests stay as they were).
TEXT_COLUMN = "text"


@dataclass(frozen=True)
class Preset:
    """How to build one synthetic corpus.

    Attributes:
        name: Preset name used on the command line.
        description: One line for ``corpus list``.
        speakers: (speaker id, gender, session) per speaker.
        emotions: Emotion labels with their relative frequencies.
        per_speaker: Default number of utterances per speaker.
        n_sentences: Size of the shared (scripted) sentence pool.
        spontaneity: Whether utterances are flagged improvised/scripted.
        expressiveness: Mean speaker expressiveness (acted corpora exaggerate).
        channel_seed: Seeds the session channels; a different value is a different channel.
        bright_channel: Wider band and less noise (studio recording).
        trait_spread: Scales the within-gender spread of F0 and vocal-tract length (1 = typical).
        n_channels: When set, each utterance is recorded on one of this many channels shared
            across speakers (in-the-wild video), rather than one channel per session or speaker.
        syllables: Fewest and most syllables of a sentence (drawn per sentence, evenly).
        transcribed: Each utterance has its own sentence (read speech, no scripted pool and no
            improvisation), and the manifest gets its transcript in a ``text`` column.
    """

    name: str
    description: str
    speakers: tuple[tuple[str, str, str | None], ...]
    emotions: dict[str, float]
    per_speaker: int
    n_sentences: int
    spontaneity: bool
    expressiveness: float
    channel_seed: int
    bright_channel: bool
    trait_spread: float = 1.0
    n_channels: int | None = None
    syllables: tuple[int, int] = (6, 12)
    transcribed: bool = False


# P0's IEMOCAP four-class counts: neutral 1708, angry 1103, sad 1084, happy 595.
IEMOCAP_LIKE = Preset(
    name="iemocap-like",
    description="5 sessions x (1 male + 1 female), neutral/happy/sad/angry in P0's proportions, improvised/scripted",
    speakers=tuple(
        (f"Ses0{session}{letter}", gender, f"Ses0{session}")
        for session in range(1, 6)
        for letter, gender in (("F", "female"), ("M", "male"))
    ),
    emotions={"neutral": 1708, "angry": 1103, "sad": 1084, "happy": 595},
    per_speaker=40,
    n_sentences=24,
    spontaneity=True,
    expressiveness=1.0,
    channel_seed=11,
    bright_channel=False,
)

RAVDESS_LIKE = Preset(
    name="ravdess-like",
    description="24 actors (odd male, even female), 8 emotions, 2 statements, studio channel",
    speakers=tuple((f"Actor_{k:02d}", "male" if k % 2 else "female", None) for k in range(1, 25)),
    emotions={
        e: (1.0 if e == "neutral" else 2.0)
        for e in ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")
    },
    per_speaker=15,
    n_sentences=2,
    spontaneity=False,
    expressiveness=1.3,
    channel_seed=29,
    bright_channel=True,
)

# P1 pretrains its ResNet-20 on speaker identification over 50 VoxCeleb speakers.
VOXCELEB_LIKE = Preset(
    name="voxceleb-like",
    description="speaker-ID corpus: 50 speakers (25 female, 25 male), wide trait spread, 6 shared channels, neutral speech",
    speakers=tuple((f"id{k:05d}", "female" if k % 2 else "male", None) for k in range(1, 51)),
    emotions={"neutral": 1.0},
    per_speaker=10,
    n_sentences=40,
    spontaneity=False,
    expressiveness=0.7,
    channel_seed=47,
    bright_channel=False,
    trait_spread=1.5,
    n_channels=6,
)

# P3 trains its recogniser on LibriSpeech (read audiobooks): many speakers, each sentence read once,
# transcribed. Speakers 1-40 are ``train`` and 41-48 ``test`` (LibriSpeech's split into
# speaker-disjoint parts); sentences are shorter than the emotional presets' so that every one
# fits a 3 s input whole. Speech is neutral (the corpus carries no emotion).
LIBRISPEECH_LIKE = Preset(
    name="librispeech-like",
    description="transcribed read speech: 48 speakers (24 female, 24 male; 40 train, 8 test), a new sentence per "
    "utterance of 3-7 syllables, 8 shared channels, neutral",
    speakers=tuple(
        (f"reader{k:03d}", "female" if k % 2 else "male", "train" if k <= 40 else "test") for k in range(1, 49)
    ),
    emotions={"neutral": 1.0},
    per_speaker=24,
    n_sentences=0,
    spontaneity=False,
    expressiveness=0.7,
    channel_seed=53,
    bright_channel=True,
    trait_spread=1.3,
    n_channels=8,
    syllables=(3, 7),
    transcribed=True,
)

PRESETS: dict[str, Preset] = {
    preset.name: preset for preset in (IEMOCAP_LIKE, RAVDESS_LIKE, VOXCELEB_LIKE, LIBRISPEECH_LIKE)
}


# Names --corpus and `corpus synth` take for a preset: the default corpus is `synthetic`.
ALIASES = {"synthetic": "iemocap-like"}


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[ALIASES.get(name, name)]
    except KeyError:
        raise ConfigError(f"unknown synthetic preset {name!r}; choose one of {', '.join(PRESETS)}") from None


def _stratified_z(rng: np.random.Generator, n: int) -> np.ndarray:
    """n standard-normal draws that cover the distribution evenly (one per quantile stratum), shuffled.

    With a handful of speakers per gender, plain draws sometimes produce a corpus whose
    only woman has a man's voice; strata keep every seed's corpus representative.
    """
    quantiles = (rng.permutation(n) + 0.5 + rng.uniform(-0.2, 0.2, n)) / n
    return stats.norm.ppf(quantiles)


def draw_speakers(preset: Preset, seed: int) -> list[Speaker]:
    """Per-speaker traits from overlapping gender-typical distributions (F0, vocal-tract length).

    F0 and vocal-tract length are negatively correlated within a gender (rho = -0.5), as in real voices.
    """
    rng = np.random.default_rng([seed, 1])
    traits: dict[str, dict[str, np.ndarray]] = {}
    for gender, f0_mean, tract_mean, breathiness in (("male", 118.0, 17.0, 0.08), ("female", 205.0, 14.9, 0.16)):
        n = sum(1 for _, g, _ in preset.speakers if g == gender)
        z_f0 = _stratified_z(rng, n)
        z_tract = -0.5 * z_f0 + np.sqrt(0.75) * rng.standard_normal(n)
        traits[gender] = {
            "f0": f0_mean * np.exp(0.12 * preset.trait_spread * z_f0),
            "tract": tract_mean + 0.7 * preset.trait_spread * z_tract,
            "breathiness": np.clip(rng.normal(breathiness, 0.05, n), 0.0, 0.5),
        }
    speakers = []
    taken = {"male": 0, "female": 0}
    for speaker_id, gender, _session in preset.speakers:
        k = taken[gender]
        taken[gender] += 1
        speakers.append(
            Speaker(
                id=speaker_id,
                gender=gender,
                f0_hz=float(traits[gender]["f0"][k]),
                tract_cm=float(traits[gender]["tract"][k]),
                rate_syllables_per_s=float(rng.normal(4.5, 0.5)),
                expressiveness=float(np.clip(rng.normal(preset.expressiveness, 0.25), 0.4, 2.0)),
                breathiness=float(traits[gender]["breathiness"][k]),
                jitter=float(rng.uniform(0.004, 0.012)),
                shimmer=float(rng.uniform(0.03, 0.08)),
                level_db=float(rng.normal(0.0, 2.0)),
            )
        )
    return speakers


def _session_channel(preset: Preset, session: str | None, speaker_index: int, channel: int | None = None) -> Channel:
    key = f"channel{channel}" if channel is not None else session if session is not None else f"speaker{speaker_index}"
    rng = np.random.default_rng([preset.channel_seed, *key.encode()])
    return Channel(
        shelf_db=float(rng.uniform(-4.0, 4.0)),
        peak_hz=float(rng.uniform(900.0, 3200.0)),
        peak_db=float(rng.uniform(-5.0, 5.0)),
        cutoff_hz=float(rng.uniform(7000.0, 7600.0) if preset.bright_channel else rng.uniform(4800.0, 6500.0)),
        snr_db=float(rng.uniform(35.0, 45.0) if preset.bright_channel else rng.uniform(18.0, 30.0)),
        reverb=float(rng.uniform(0.05, 0.2) if preset.bright_channel else rng.uniform(0.2, 0.6)),
    )


def emotion_quota(emotions: dict[str, float], total: int) -> list[str]:
    """Largest-remainder allocation: counts match the proportions as closely as integers can."""
    weights = np.array(list(emotions.values()), dtype=float)
    exact = weights / weights.sum() * total
    counts = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - counts), kind="stable")[: total - counts.sum()]:
        counts[i] += 1
    return [label for label, count in zip(emotions, counts) for _ in range(count)]


def plan_corpus(preset: Preset, *, seed: int, per_speaker: int | None = None) -> list[dict]:
    """Every utterance's labels and synthesis parameters, without audio."""
    per_speaker = per_speaker or preset.per_speaker
    if per_speaker < 2:
        raise ConfigError(f"--size must be at least 2 utterances per speaker (got {per_speaker})")
    speakers = draw_speakers(preset, seed)
    rows = []
    labels = emotion_quota(preset.emotions, per_speaker * len(speakers))
    label_rng = np.random.default_rng([seed, 2])
    labels = list(label_rng.permutation(labels))
    for s_index, (speaker, (_, _, session)) in enumerate(zip(speakers, preset.speakers)):
        for u_index in range(per_speaker):
            emotion = str(labels[s_index * per_speaker + u_index])
            if preset.spontaneity:
                spontaneity = "improvised" if u_index % 2 == 0 else "scripted"
            else:
                spontaneity = None
            if spontaneity == "improvised" or preset.transcribed:
                sentence = f"{'read' if preset.transcribed else 'impro'}_{speaker.id}_{u_index:03d}"
            else:
                sentence = f"sentence{u_index % preset.n_sentences:02d}"
            rows.append(
                {
                    "id": f"{speaker.id}_{u_index:03d}",
                    "speaker": speaker,
                    "speaker_index": s_index,
                    "session": session,
                    "emotion": emotion,
                    "spontaneity": spontaneity,
                    "sentence": sentence,
                    "channel": None if preset.n_channels is None else (s_index + u_index) % preset.n_channels,
                    "seed": [seed, 3, s_index, u_index],
                }
            )
    return rows


def _sentence(preset: Preset, sentence: str) -> tuple[int, int]:
    """The sentence's seed (its phonetic content) and its number of syllables."""
    sentence_seed = int(hashlib.sha256(sentence.encode()).hexdigest()[:12], 16)
    fewest, most = preset.syllables
    return sentence_seed, int(fewest + np.random.default_rng(sentence_seed).integers(0, most - fewest + 1))


def _render(preset: Preset, row: dict) -> np.ndarray:
    rng = np.random.default_rng(row["seed"])
    speaker: Speaker = row["speaker"]
    sentence_seed, n_syllables = _sentence(preset, row["sentence"])
    emotion = with_expressiveness(EMOTIONS[row["emotion"]], speaker, rng)
    channel = _session_channel(preset, row["session"], row["speaker_index"], row["channel"])
    return synthesise(speaker, emotion, channel, sentence_seed=sentence_seed, n_syllables=n_syllables, rng=rng)


def write_corpus(
    preset: Preset,
    out: Path,
    *,
    seed: int = 0,
    per_speaker: int | None = None,
    observer: ProgressObserver = NULL_OBSERVER,
) -> Path:
    """Synthesise a preset into ``out`` (WAV files plus ``manifest.csv``), atomically.

    Returns:
        The path of the manifest.
    """
    rows = plan_corpus(preset, seed=seed, per_speaker=per_speaker)
    out = Path(os.path.abspath(out))  # "." has no name to stage beside
    # An empty folder the caller made (the working folder, a mounted volume): staged inside it, so the parts move
    # up on one device and nothing is asked of its parent.
    fill = out.is_dir() and not any(out.iterdir())
    if not fill:
        out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out if fill else out.parent))
    try:
        with observer.task(f"synthesising {preset.name}", total=len(rows)) as task:
            for row in rows:
                relative = Path("wav") / row["speaker"].id / f"{row['id']}.wav"
                write_wav(staging / relative, _render(preset, row), SAMPLE_RATE)
                row["path"] = relative.as_posix()
                task.advance()
        with open(staging / MANIFEST_NAME, "w", newline="") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(MANIFEST_COLUMNS + ((TEXT_COLUMN,) if preset.transcribed else ()))
            for row in rows:
                text = [transcript(*_sentence(preset, row["sentence"]))] if preset.transcribed else []
                writer.writerow(
                    [row["id"], row["path"], row["speaker"].id, row["speaker"].gender, row["emotion"],
                     row["session"] or "", row["spontaneity"] or "", row["sentence"], *text]
                )
        publish(staging, directory=True)
        if (out / MANIFEST_NAME).is_file():
            # Another run published the same corpus meanwhile (synthesis is deterministic). Keep
            # theirs: removing it would pull files from under a run that is reading them.
            shutil.rmtree(staging, ignore_errors=True)
            return out / MANIFEST_NAME
        if fill:  # the manifest last: a reader never finds it before its audio
            for part in sorted(staging.iterdir(), key=lambda p: p.name == MANIFEST_NAME):
                os.replace(part, out / part.name)
            staging.rmdir()
            return out / MANIFEST_NAME
        if out.exists():
            shutil.rmtree(out)  # an unfinished folder from an older version: no manifest, so nobody reads it
        try:
            os.replace(staging, out)
        except OSError:
            if not (out / MANIFEST_NAME).is_file():
                raise
            shutil.rmtree(staging, ignore_errors=True)  # lost the race to publish: theirs is the same corpus
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out / MANIFEST_NAME


def synthetic_corpus(
    name: str,
    *,
    cache_dir: Path,
    seed: int = 0,
    per_speaker: int | None = None,
    observer: ProgressObserver = NULL_OBSERVER,
) -> Corpus:
    """The preset ``name``, synthesised once into the cache and loaded from there afterwards."""
    from ser_audit.corpus.manifest import load_manifest

    preset = get_preset(name)
    size = per_speaker or preset.per_speaker
    folder = cache_dir / "corpora" / f"{preset.name}-seed{seed}-n{size}-v{SYNTH_VERSION}"
    manifest = folder / MANIFEST_NAME
    if not manifest.is_file():
        write_corpus(preset, folder, seed=seed, per_speaker=size, observer=observer)
    corpus = load_manifest(manifest, name=preset.name)
    corpus.emotions = tuple(preset.emotions)
    return corpus

