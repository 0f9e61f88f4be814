"""Reading audio: any channel count and sample rate in, mono float32 at the model's rate out."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np
import soundfile

from ser_audit.errors import CorpusError


def read_audio(path: Path, sample_rate: int) -> np.ndarray:
    """Read ``path`` as mono float32 at ``sample_rate`` (downmixed and resampled as needed).

    Raises:
        CorpusError: The file is missing, empty, unreadable or holds no samples.
    """
    if not path.is_file():
        raise CorpusError(f"audio file {path} does not exist; fix the manifest or restore the file")
    if path.stat().st_size == 0:
        raise CorpusError(f"audio file {path} is empty (0 bytes); re-export or remove it from the manifest")
    try:
        data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, ValueError) as error:
        raise CorpusError(f"audio file {path} cannot be decoded ({error}); re-export it as WAV/FLAC") from None
    if data.shape[0] == 0:
        raise CorpusError(f"audio file {path} holds no samples; remove it from the manifest")
    finite = np.isfinite(data)
    if not finite.all():
        sample, channel = (int(i) for i in np.argwhere(~finite)[0])
        count = int((~finite).sum())
        raise CorpusError(
            f"audio file {path} holds {count} NaN or infinite value(s), the first at sample {sample} "
            f"(channel {channel}, {sample / rate:.3f} s: {data[sample, channel]}); re-export it or remove it from the manifest"
        )
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if rate != sample_rate:
        mono = resample(mono, rate, sample_rate)
    return np.ascontiguousarray(mono, dtype=np.float32)


# Sample formats that can hold NaN or infinity; integer PCM cannot, so only these are decoded up front.
FLOAT_SUBTYPES = {"FLOAT", "DOUBLE"}


def scan_audio(paths: Iterable[tuple[str, Path]]) -> dict[str, tuple[float, int]]:
    """Before any long work: every file's header is read and floating-point files are decoded, which
    must hold only finite samples; returns each readable file's duration in seconds and its sample
    rate, by id (of the ``(id, path)`` pairs).

    Raises:
        CorpusError: a floating-point file holds NaN or infinity (named with its first bad sample).
    """
    headers = {}
    for identifier, path in paths:
        try:
            info = soundfile.info(str(path))
        except (soundfile.LibsndfileError, RuntimeError):
            continue  # read_audio names unreadable files when they are read
        headers[identifier] = (info.frames / info.samplerate, int(info.samplerate))
        if info.subtype in FLOAT_SUBTYPES:
            read_audio(path, info.samplerate)
    return headers


def resample(signal: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    import torch
    import torchaudio.functional as audio_functional

    tensor = torch.from_numpy(np.ascontiguousarray(signal, dtype=np.float32))
    return audio_functional.resample(tensor, source_rate, target_rate).numpy()


def write_wav(path: Path, signal: np.ndarray, sample_rate: int) -> None:
    """Write 16-bit PCM deterministically (no timestamps in the header)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), np.clip(signal, -1.0, 1.0), sample_rate, subtype="PCM_16")
