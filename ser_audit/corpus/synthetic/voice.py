"""A source-filter voice synthesiser, simple enough to be fast and rich enough to carry real cues.

Source: a glottal flow pulse train (Rosenberg-style opening/closing phases)
differentiated for lip radiation, with per-period jitter and shimmer and
pulse-synchronous aspiration noise. Filter: a cascade of time-varying formant
resonators whose frequencies come from a vowel table scaled by the speaker's
vocal-tract length. Consonants are band-limited noise bursts; words are
separated by pauses. Emotion moves F0 level and range, tempo, intensity,
spectral tilt, jitter and breathiness; speakers differ in F0, vocal-tract
length, speaking rate and expressiveness; sessions differ in channel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import signal

SAMPLE_RATE = 16_000
_BLOCK = 240  # formant trajectories update every 15 ms

# Adult male formants F1-F4 in Hz for a 17.5 cm vocal tract (Peterson & Barney averages; F4 nominal).
VOWELS = np.array(
    [
        [270, 2290, 3010, 3500],
        [390, 1990, 2550, 3500],
        [530, 1840, 2480, 3600],
        [660, 1720, 2410, 3600],
        [730, 1090, 2440, 3500],
        [570, 840, 2410, 3400],
        [440, 1020, 2240, 3400],
        [300, 870, 2240, 3400],
        [640, 1190, 2390, 3500],
        [490, 1350, 1690, 3300],
    ],
    dtype=np.float64,
)
_BANDWIDTHS = np.array([70.0, 100.0, 140.0, 200.0])
# (low, high) Hz bands of the consonant noise classes: s, sh, f/th, plosive burst.
_CONSONANT_BANDS = ((3800.0, 7500.0), (1900.0, 5000.0), (900.0, 7500.0), (500.0, 4500.0))
_CONSONANT_FILTERS = [signal.butter(4, band, btype="bandpass", fs=SAMPLE_RATE, output="sos") for band in _CONSONANT_BANDS]
_REFERENCE_TRACT_CM = 17.5
# Transcript symbols, one code point each: the IPA vowel of each row of ``VOWELS`` (heed, hid,
# head, had, hod, hawed, hood, who'd, hud, heard) and a consonant per noise class of
# ``_CONSONANT_BANDS``. A space separates words.
VOWEL_SYMBOLS = ("i", "\u026a", "\u025b", "\u00e6", "\u0251", "\u0254", "\u028a", "u", "\u028c", "\u025d")
CONSONANT_SYMBOLS = ("s", "\u0283", "f", "t")
WORD_BOUNDARY = " "


@dataclass(frozen=True)
class Speaker:
    """Traits of one synthetic speaker."""

    id: str
    gender: str
    f0_hz: float
    tract_cm: float
    rate_syllables_per_s: float
    expressiveness: float
    breathiness: float
    jitter: float
    shimmer: float
    level_db: float


@dataclass(frozen=True)
class Emotion:
    """Prosodic and voice-quality changes relative to neutral speech."""

    f0_ratio: float = 1.0
    range_ratio: float = 1.0
    tempo_ratio: float = 1.0
    level_db: float = 0.0
    tilt: float = 0.0  # > 0 brighter (pressed), < 0 darker (lax)
    jitter_ratio: float = 1.0
    breathiness_add: float = 0.0

    def scaled(self, amount: float) -> "Emotion":
        """Move every effect ``amount`` times as far from neutral (expressiveness)."""
        return Emotion(
            f0_ratio=self.f0_ratio**amount,
            range_ratio=self.range_ratio**amount,
            tempo_ratio=self.tempo_ratio**amount,
            level_db=self.level_db * amount,
            tilt=self.tilt * amount,
            jitter_ratio=self.jitter_ratio**amount,
            breathiness_add=self.breathiness_add * amount,
        )


EMOTIONS: dict[str, Emotion] = {
    "neutral": Emotion(),
    "calm": Emotion(f0_ratio=0.97, range_ratio=0.75, tempo_ratio=0.9, level_db=-2.0, tilt=-0.3),
    "happy": Emotion(f0_ratio=1.18, range_ratio=1.6, tempo_ratio=1.08, level_db=3.0, tilt=0.35, jitter_ratio=1.1),
    "sad": Emotion(
        f0_ratio=0.93, range_ratio=0.55, tempo_ratio=0.8, level_db=-5.0, tilt=-0.6, jitter_ratio=1.25, breathiness_add=0.08
    ),
    "angry": Emotion(f0_ratio=1.12, range_ratio=1.3, tempo_ratio=1.12, level_db=6.0, tilt=0.8, jitter_ratio=1.35),
    "fearful": Emotion(f0_ratio=1.25, range_ratio=1.15, tempo_ratio=1.18, level_db=0.0, jitter_ratio=1.8, breathiness_add=0.1),
    "disgust": Emotion(f0_ratio=0.95, range_ratio=1.1, tempo_ratio=0.85, level_db=1.0, tilt=0.2, jitter_ratio=1.3),
    "surprised": Emotion(f0_ratio=1.3, range_ratio=1.9, tempo_ratio=1.0, level_db=3.0, tilt=0.3),
}


@dataclass(frozen=True)
class Channel:
    """Recording channel: a tilt/peak EQ, a band limit, room reflections and noise."""

    shelf_db: float
    peak_hz: float
    peak_db: float
    cutoff_hz: float
    snr_db: float
    reverb: float


def _syllable_plan(sentence_rng: np.random.Generator, n_syllables: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vowel index, consonant class (-1 none) and word-final flag per syllable; fixed by the sentence."""
    vowels = sentence_rng.integers(0, len(VOWELS), n_syllables)
    consonants = np.where(sentence_rng.random(n_syllables) < 0.7, sentence_rng.integers(0, 4, n_syllables), -1)
    word_end = sentence_rng.random(n_syllables) < 0.3
    word_end[-1] = True
    return vowels, consonants, word_end


def transcript(sentence_seed: int, n_syllables: int) -> str:
    """The symbols ``synthesise`` speaks for this sentence: per syllable its consonant (if any), then
    its vowel; words separated by a space. Fixed by the sentence, like the audio's phonetic content.

    Example:
        >>> transcript(7, 6)
        'sɝ ʃʊʊʃʌɔu'
    """
    vowels, consonants, word_end = _syllable_plan(np.random.default_rng(sentence_seed), n_syllables)
    words, word = [], ""
    for vowel, consonant, last in zip(vowels, consonants, word_end):
        word += (CONSONANT_SYMBOLS[consonant] if consonant >= 0 else "") + VOWEL_SYMBOLS[vowel]
        if last:
            words.append(word)
            word = ""
    return WORD_BOUNDARY.join(words)


def _f0_track(n: int, syllable_centres: np.ndarray, rng: np.random.Generator, f0: float, range_semitones: float) -> np.ndarray:
    accents = rng.normal(0.0, 1.0, len(syllable_centres)) * range_semitones / 2.0
    declination = np.linspace(1.0, -1.5, len(syllable_centres))
    semitones = np.interp(np.arange(n), syllable_centres, accents + declination)
    return f0 * 2.0 ** (semitones / 12.0)


def _glottal_source(
    f0_track: np.ndarray, rng: np.random.Generator, jitter: float, shimmer: float, open_quotient: float
) -> tuple[np.ndarray, np.ndarray]:
    """Differentiated glottal flow and the flow itself (for pulse-synchronous aspiration)."""
    n = len(f0_track)
    starts = [0.0]
    while starts[-1] < n:
        period = SAMPLE_RATE / f0_track[min(int(starts[-1]), n - 1)]
        starts.append(starts[-1] + period * (1.0 + jitter * rng.standard_normal()))
    starts_array = np.asarray(starts)
    periods = np.diff(starts_array)
    amplitudes = np.clip(1.0 + shimmer * rng.standard_normal(len(periods)), 0.2, None)
    sample = np.arange(n)
    index = np.clip(np.searchsorted(starts_array, sample, side="right") - 1, 0, len(periods) - 1)
    phase = (sample - starts_array[index]) / periods[index]
    opening = 0.6 * open_quotient
    flow = np.where(
        phase < opening,
        0.5 * (1.0 - np.cos(np.pi * phase / opening)),
        np.where(phase < open_quotient, np.cos(0.5 * np.pi * (phase - opening) / (open_quotient - opening)), 0.0),
    )
    flow *= amplitudes[index]
    return np.diff(flow, prepend=0.0), flow


def _formant_filter(excitation: np.ndarray, formant_track: np.ndarray, bandwidth_scale: float) -> np.ndarray:
    """Cascade of second-order resonators, merged into one all-pole filter retuned every block."""
    radius = np.exp(-np.pi * _BANDWIDTHS * bandwidth_scale / SAMPLE_RATE)
    theta = 2.0 * np.pi * np.minimum(formant_track, 0.45 * SAMPLE_RATE) / SAMPLE_RATE
    a1 = -2.0 * radius * np.cos(theta)
    a2 = np.broadcast_to(radius * radius, a1.shape)
    gains = np.prod(1.0 + a1 + a2, axis=1)  # unit gain at DC
    out = np.empty_like(excitation)
    state = np.zeros(2 * formant_track.shape[1])
    for block in range(formant_track.shape[0]):
        denominator = np.array([1.0])
        for k in range(formant_track.shape[1]):
            denominator = np.convolve(denominator, [1.0, a1[block, k], a2[block, k]])
        segment = slice(block * _BLOCK, (block + 1) * _BLOCK)
        out[segment], state = signal.lfilter([gains[block]], denominator, excitation[segment], zi=state)
    return out


def _apply_channel(audio: np.ndarray, channel: Channel, rng: np.random.Generator) -> np.ndarray:
    tilt = signal.lfilter([1.0, -0.7 * np.tanh(channel.shelf_db / 6.0)], [1.0], audio)
    b, a = _peaking(channel.peak_hz, channel.peak_db)
    shaped = signal.lfilter(b, a, tilt)
    shaped = signal.sosfilt(signal.butter(4, channel.cutoff_hz, fs=SAMPLE_RATE, output="sos"), shaped)
    if channel.reverb > 0:
        length = int(0.06 * SAMPLE_RATE)
        response = rng.standard_normal(length) * np.exp(-np.arange(length) / (0.012 * SAMPLE_RATE))
        response *= channel.reverb / np.sqrt(np.sum(response**2))
        response[0] += 1.0
        shaped = signal.fftconvolve(shaped, response)[: len(audio)]
    power = np.mean(shaped**2) + 1e-12
    noise = rng.standard_normal(len(audio))
    noise = signal.lfilter([1.0], [1.0, -0.9], noise)  # brownish hum-and-hiss floor
    noise *= np.sqrt(power / (np.mean(noise**2) * 10.0 ** (channel.snr_db / 10.0)))
    return shaped + noise


def _peaking(freq: float, gain_db: float, q: float = 1.2) -> tuple[np.ndarray, np.ndarray]:
    amplitude = 10.0 ** (gain_db / 40.0)
    omega = 2.0 * np.pi * freq / SAMPLE_RATE
    alpha = np.sin(omega) / (2.0 * q)
    b = np.array([1 + alpha * amplitude, -2 * np.cos(omega), 1 - alpha * amplitude])
    a = np.array([1 + alpha / amplitude, -2 * np.cos(omega), 1 - alpha / amplitude])
    return b / a[0], a / a[0]


def synthesise(
    speaker: Speaker,
    emotion: Emotion,
    channel: Channel,
    *,
    sentence_seed: int,
    n_syllables: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """One utterance as float32 at ``SAMPLE_RATE``.

    Args:
        speaker: Speaker traits.
        emotion: Emotion effects (already scaled by the speaker's expressiveness).
        channel: Session channel.
        sentence_seed: Fixes the phonetic content, so one sentence sounds alike across speakers.
        n_syllables: Sentence length.
        rng: Source of utterance-level variation (prosody, noise).
    """
    vowels, consonants, word_end = _syllable_plan(np.random.default_rng(sentence_seed), n_syllables)
    tempo = speaker.rate_syllables_per_s * emotion.tempo_ratio * rng.uniform(0.9, 1.1)
    syllable_s = rng.gamma(9.0, 1.0 / (9.0 * tempo), n_syllables)
    pauses = np.where(word_end, rng.uniform(0.03, 0.25, n_syllables) / emotion.tempo_ratio, 0.0)
    pauses[-1] = 0.0
    lead = int(rng.uniform(0.08, 0.2) * SAMPLE_RATE)
    segments = []
    cursor = lead
    for k in range(n_syllables):
        consonant = int(min(0.35 * syllable_s[k], 0.09) * SAMPLE_RATE) if consonants[k] >= 0 else 0
        vowel = int(syllable_s[k] * SAMPLE_RATE) - consonant
        segments.append((cursor, consonant, vowel))
        cursor += consonant + vowel + int(pauses[k] * SAMPLE_RATE)
    n = cursor + lead
    n += (-n) % _BLOCK

    scale = _REFERENCE_TRACT_CM / speaker.tract_cm
    vowel_centres = np.array([start + c + v / 2 for start, c, v in segments])
    formants = np.stack(
        [np.interp(np.arange(n // _BLOCK) * _BLOCK, vowel_centres, VOWELS[vowels, k] * scale) for k in range(4)], axis=1
    )
    formants *= np.exp(rng.normal(0.0, 0.04, (1, 4)))  # articulation differs between repetitions

    voiced = np.zeros(n)
    noise_burst = np.zeros(n)
    ramp = int(0.015 * SAMPLE_RATE)
    for (start, consonant, vowel), kind in zip(segments, consonants):
        position = np.arange(vowel)
        envelope = np.minimum(1.0, np.minimum(position + 1, vowel - position) / ramp)
        voiced[start + consonant : start + consonant + vowel] = envelope * rng.uniform(0.7, 1.0)
        if consonant:
            burst = rng.standard_normal(consonant) * np.hanning(consonant)
            noise_burst[start : start + consonant] = signal.sosfilt(_CONSONANT_FILTERS[kind], burst) * 0.25

    f0 = speaker.f0_hz * emotion.f0_ratio * rng.uniform(0.95, 1.05)
    range_semitones = 3.0 * emotion.range_ratio * rng.uniform(0.8, 1.2)
    f0_track = _f0_track(n, vowel_centres, rng, f0, range_semitones)
    breathiness = float(np.clip(speaker.breathiness + emotion.breathiness_add, 0.0, 0.6))
    open_quotient = float(np.clip(0.55 + 0.4 * breathiness - 0.08 * emotion.tilt, 0.35, 0.85))
    source, flow = _glottal_source(f0_track, rng, speaker.jitter * emotion.jitter_ratio, speaker.shimmer, open_quotient)
    source /= np.std(source) + 1e-9
    aspiration = rng.standard_normal(n) * (0.3 + flow) * breathiness * 1.5
    excitation = signal.lfilter([1.0], [1.0, -float(np.clip(0.35 - 0.25 * emotion.tilt, 0.0, 0.8))], source + aspiration)
    vocal = _formant_filter(excitation * voiced, formants, bandwidth_scale=1.0 + breathiness)
    vocal /= np.sqrt(np.mean(vocal[voiced > 0] ** 2)) + 1e-9
    audio = vocal + noise_burst / (np.std(noise_burst[noise_burst != 0]) + 1e-9) * 0.35 if np.any(noise_burst) else vocal
    level = 10.0 ** ((-24.0 + speaker.level_db + emotion.level_db + rng.normal(0.0, 1.0)) / 20.0)
    audio = _apply_channel(audio * level, channel, rng)
    return np.clip(audio, -1.0, 1.0).astype(np.float32)


def with_expressiveness(emotion: Emotion, speaker: Speaker, rng: np.random.Generator) -> Emotion:
    """The emotion as this speaker shows it in this utterance."""
    return emotion.scaled(speaker.expressiveness * rng.uniform(0.7, 1.3))


__all__ = ["Channel", "EMOTIONS", "Emotion", "SAMPLE_RATE", "Speaker", "synthesise", "transcript", "with_expressiveness"]
