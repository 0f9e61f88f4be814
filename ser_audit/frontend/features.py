"""Differentiable front-ends built from a FrontEndSpec on torchaudio transforms.

``FrontEnd(spec)(waveform)`` maps ``[batch, samples]`` at ``spec.sample_rate`` to
the model's input tensor in ``spec.layout``. Gradients flow from the features
back to the waveform (F0 and zero-crossing rate are piecewise constant and pass
zero gradient).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
import torchaudio.functional as audio_functional
import torchaudio.transforms as transforms
from torch import nn

from ser_audit.frontend.spec import Axis, Features, FrontEndSpec

_WINDOWS = {"hann": torch.hann_window, "hamming": torch.hamming_window}
MU = 255.0


class LowLevelDescriptors(nn.Module):
    """P0's IS09-style frame descriptors: log energy, MFCC 1-12, zero-crossing rate, voicing probability, F0.

    25 ms frames every 10 ms by default (``win_length``, ``hop_length``). Returns ``[batch, 16, frames]``.
    Pitch follows Boersma (1993): the autocorrelation of a Hann-windowed 40 ms frame (long enough
    for 2.4 periods at 60 Hz, centred like the 25 ms frame) divided by the window's own
    autocorrelation, with a small cost per octave of lag so subharmonics do not win ties.
    Voicing probability is the peak's height; F0 is the sample rate over its lag, and 0 where
    the voicing probability is under 0.5.
    """

    F0_RANGE_HZ = (60.0, 500.0)
    VOICING_THRESHOLD = 0.5
    OCTAVE_COST = 0.03
    PITCH_WINDOW_S = 0.04

    window: torch.Tensor
    window_autocorr: torch.Tensor
    octave_penalty: torch.Tensor

    def __init__(self, sample_rate: int, win_length: int, hop_length: int) -> None:
        super().__init__()
        self.sample_rate = sample_rate
        self.win_length = win_length
        self.hop_length = hop_length
        self.mfcc = transforms.MFCC(
            sample_rate=sample_rate,
            n_mfcc=13,
            melkwargs={"n_fft": win_length, "win_length": win_length, "hop_length": hop_length, "n_mels": 26, "center": False},
        )
        self.pitch_length = max(win_length, int(self.PITCH_WINDOW_S * sample_rate))
        window = torch.hann_window(self.pitch_length)
        self.register_buffer("window", window, persistent=False)
        self.autocorr_fft = 1 << (2 * self.pitch_length - 1).bit_length()
        window_autocorr = torch.fft.irfft(torch.fft.rfft(window, self.autocorr_fft).abs() ** 2, self.autocorr_fft)
        self.register_buffer("window_autocorr", window_autocorr[: self.pitch_length] / window_autocorr[0], persistent=False)
        self.min_lag = int(sample_rate / self.F0_RANGE_HZ[1])
        self.max_lag = min(int(sample_rate / self.F0_RANGE_HZ[0]), self.pitch_length // 2)
        lags = torch.arange(self.min_lag, self.max_lag + 1, dtype=torch.float32)
        self.register_buffer("octave_penalty", self.OCTAVE_COST * torch.log2(lags / self.min_lag), persistent=False)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        frames = waveform.unfold(-1, self.win_length, self.hop_length)  # [batch, frames, win]
        energy = torch.log(frames.pow(2).mean(-1) + 1e-8)
        mfcc = self.mfcc(waveform)[:, 1:13, : frames.shape[1]]
        signs = torch.sign(frames)
        zero_crossing = (signs[..., 1:] != signs[..., :-1]).float().mean(-1)
        voicing, f0 = self._pitch(waveform, frames.shape[1])
        per_frame = torch.stack([energy, zero_crossing, voicing, f0 / 100.0], dim=1)  # F0 in 100 Hz units
        return torch.cat([per_frame[:, :1], mfcc, per_frame[:, 1:]], dim=1)

    def _pitch(self, waveform: torch.Tensor, n_frames: int) -> tuple[torch.Tensor, torch.Tensor]:
        extra = self.pitch_length - self.win_length
        padded = torch.nn.functional.pad(waveform, (extra // 2, extra - extra // 2))
        frames = padded.unfold(-1, self.pitch_length, self.hop_length)[:, :n_frames]
        centred = (frames - frames.mean(-1, keepdim=True)) * self.window
        spectrum = torch.fft.rfft(centred, self.autocorr_fft)
        autocorr = torch.fft.irfft(spectrum.real**2 + spectrum.imag**2, self.autocorr_fft)[..., : self.pitch_length]
        autocorr = autocorr / (autocorr[..., :1] + 1e-8) / self.window_autocorr.clamp_min(0.05)
        candidates = autocorr[..., self.min_lag : self.max_lag + 1]
        _, lag = (candidates - self.octave_penalty).max(-1)
        voicing = candidates.gather(-1, lag.unsqueeze(-1)).squeeze(-1).clamp(0.0, 1.0)
        f0 = self.sample_rate / (lag + self.min_lag).float()
        return voicing, torch.where(voicing > self.VOICING_THRESHOLD, f0, torch.zeros_like(f0))


class SmoothedPitch(nn.Module):
    """F0 per frame of a centred STFT (frame ``k`` centred on sample ``k * hop_length``), in 100 Hz
    units, 0 where unvoiced, smoothed by a running median of five frames (P3's "smoothed pitch").
    The pitch tracker is :class:`LowLevelDescriptors`'s. Returns ``[batch, 1, frames]``."""

    MEDIAN_FRAMES = 5

    def __init__(self, sample_rate: int, win_length: int, hop_length: int) -> None:
        super().__init__()
        self.descriptors = LowLevelDescriptors(sample_rate, win_length, hop_length)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        half = self.descriptors.win_length // 2
        n_frames = waveform.shape[-1] // self.descriptors.hop_length + 1
        padded = torch.nn.functional.pad(waveform, (half, self.descriptors.win_length - half))
        _, f0 = self.descriptors._pitch(padded, n_frames)
        side = self.MEDIAN_FRAMES // 2
        windows = torch.nn.functional.pad(f0.unsqueeze(1), (side, side), mode="replicate").unfold(-1, self.MEDIAN_FRAMES, 1)
        return windows.median(-1).values / 100.0


class MfccWithPitch(nn.Module):
    """MFCC rows, then the smoothed F0 row: ``[batch, n_mfcc + 1, frames]``."""

    def __init__(self, mfcc: nn.Module, pitch: SmoothedPitch) -> None:
        super().__init__()
        self.mfcc = mfcc
        self.pitch = pitch

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        cepstra = self.mfcc(waveform)
        pitch = self.pitch(waveform)
        frames = min(cepstra.shape[-1], pitch.shape[-1])
        return torch.cat([cepstra[..., :frames], pitch[..., :frames]], dim=1)


def _spectral_core(features: Features, sample_rate: int) -> nn.Module:
    win_length = features.win_length or features.n_fft
    window_fn = _WINDOWS[features.window]
    if features.kind == "spectrogram":
        return transforms.Spectrogram(
            n_fft=features.n_fft, win_length=win_length, hop_length=features.hop_length, window_fn=window_fn, power=features.power
        )
    if features.kind == "log_mel":
        return transforms.MelSpectrogram(
            sample_rate=sample_rate, n_fft=features.n_fft, win_length=win_length, hop_length=features.hop_length,
            window_fn=window_fn, power=features.power, n_mels=features.n_mels, f_min=features.f_min, f_max=features.f_max,
        )
    if features.kind == "mfcc":
        mfcc = transforms.MFCC(
            sample_rate=sample_rate, n_mfcc=features.n_mfcc,
            melkwargs={"n_fft": features.n_fft, "win_length": win_length, "hop_length": features.hop_length,
                       "n_mels": features.n_mels, "f_min": features.f_min, "f_max": features.f_max, "window_fn": window_fn},
        )
        if features.pitch:
            return MfccWithPitch(mfcc, SmoothedPitch(sample_rate, win_length, features.hop_length))
        return mfcc
    if features.kind == "stack":
        return FeatureStack(features.parts, sample_rate)
    if features.kind == "lld":
        return LowLevelDescriptors(sample_rate, win_length, features.hop_length)
    raise AssertionError(features.kind)


class FrontEnd(nn.Module):
    """Waveform ``[batch, samples]`` to model input, as the spec says."""

    def __init__(self, spec: FrontEndSpec) -> None:
        super().__init__()
        self.spec = spec
        features = spec.features
        self.core = None if features.kind == "waveform" else _spectral_core(features, spec.sample_rate)
        # Audio shorter than one analysis window is zero-padded to one frame (a 1-sample file has no frame).
        self.min_samples = 0 if features.kind == "waveform" else max(features.n_fft, features.win_length or 0)
        self.keep_bins: int | None = None
        if features.kind == "spectrogram" and features.f_max is not None:
            self.keep_bins = int(math.floor(features.f_max / (spec.sample_rate / 2) * (features.n_fft // 2))) + 1

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        spec, features = self.spec, self.spec.features
        if features.peak_normalise:
            waveform = waveform / waveform.abs().amax(-1, keepdim=True).clamp_min(1e-8)
        if self.core is None:
            values = waveform.unsqueeze(1)  # [batch, 1, time] with the single "freq" row
        else:
            if waveform.shape[-1] < self.min_samples:
                waveform = torch.nn.functional.pad(waveform, (0, self.min_samples - waveform.shape[-1]))
            values = self.core(waveform)  # [batch, freq, time]
            if self.keep_bins is not None:
                values = values[:, : self.keep_bins]
            if features.mu_law:
                peak = values.amax(dim=(1, 2), keepdim=True).clamp_min(features.log_offset)
                values = torch.log1p(MU * values / peak) / math.log1p(MU)
            elif features.kind in ("spectrogram", "log_mel"):
                values = torch.log(values + features.log_offset)
            if features.deltas:
                derivatives = [values]
                for _ in range(features.deltas):
                    derivatives.append(audio_functional.compute_deltas(derivatives[-1]))
                values = torch.cat(derivatives, dim=1)
        if spec.normalisation == "utterance":
            values = (values - values.mean(-1, keepdim=True)) / (values.std(-1, keepdim=True) + 1e-5)
        elif spec.normalisation == "global":
            values = (values - spec.mean) / spec.std
        return _to_layout(values, spec.layout)


class FeatureStack(nn.Module):
    """Each part's rows in turn (``[batch, rows, frames]``), frames cut to the shortest part's."""

    def __init__(self, parts: Sequence[Features], sample_rate: int) -> None:
        super().__init__()
        layout: list[Axis] = ["batch", "freq", "time"]
        self.parts = nn.ModuleList(
            FrontEnd(FrontEndSpec(sample_rate=sample_rate, features=part, layout=layout, emotions=[])) for part in parts
        )

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        rows = [part(waveform) for part in self.parts]
        frames = min(values.shape[-1] for values in rows)
        return torch.cat([values[..., :frames] for values in rows], dim=1)


def _to_layout(values: torch.Tensor, layout: Sequence[str]) -> torch.Tensor:
    """[batch, freq, time] to the spec's axis order, inserting a channel axis when asked for."""
    source = ["batch", "freq", "time"]
    if "freq" not in layout:
        values = values.squeeze(1)
        source = ["batch", "time"]
    if "channel" in layout:
        values = values.unsqueeze(1)
        source = ["batch", "channel", *source[1:]]
    return values.permute(*[source.index(axis) for axis in layout])


def fit_length(signal: np.ndarray, num_samples: int | None, crop: str) -> np.ndarray:
    """Crop (centre or start) or zero-pad to ``num_samples``; identity for variable-length models."""
    if num_samples is None or len(signal) == num_samples:
        return signal
    if len(signal) > num_samples:
        start = (len(signal) - num_samples) // 2 if crop == "center" else 0
        return signal[start : start + num_samples]
    return np.pad(signal, (0, num_samples - len(signal)))
