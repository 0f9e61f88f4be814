"""Test doubles for ser-audit's own tests and for plugin authors: tiny corpora and planted models.

Nothing here needs real weights or data. The planted-leak model has one layer that
carries the speaker's F0 (a strong gender cue) and one that carries nothing about
the speaker, so an audit must find high leakage on the first and chance on the second.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ser_audit.corpus.interface import Corpus
from ser_audit.corpus.manifest import load_manifest
from ser_audit.corpus.synthetic.presets import get_preset, write_corpus
from ser_audit.frontend.spec import ExtraInput, Features, FrontEndSpec
from ser_audit.leakage.statistics.calibration import PlantedLayers, clustered_layers  # noqa: F401  (re-exported)
from ser_audit.models.eager import EagerTorchModel

F0_CHANNEL = 15  # position of F0 among the 32 LLD channels (energy, 12 MFCC, ZCR, voicing, F0, deltas)


def tiny_corpus(folder: Path, *, preset: str = "iemocap-like", per_speaker: int = 8, seed: int = 0) -> Corpus:
    """Synthesise a small corpus into ``folder`` and load it."""
    manifest = write_corpus(get_preset(preset), folder, seed=seed, per_speaker=per_speaker)
    corpus = load_manifest(manifest, name=preset)
    corpus.emotions = tuple(get_preset(preset).emotions)
    return corpus


LLD_FRONTEND = FrontEndSpec(
    features=Features(kind="lld", n_fft=400, win_length=400, hop_length=160, deltas=1),
    layout=["batch", "freq", "time"],
    emotions=["neutral", "happy", "sad", "angry"],
)


class VoicedPitch(nn.Module):
    """Log of the median F0 over voiced frames (robust to octave errors): ``[batch, 32, time]`` to ``[batch, 1]``."""

    def forward(self, descriptors: torch.Tensor) -> torch.Tensor:
        f0 = descriptors[:, F0_CHANNEL]
        median = torch.nanmedian(torch.where(f0 > 0, f0, torch.full_like(f0, float("nan"))), dim=-1).values
        return torch.log(torch.nan_to_num(median, nan=1.0).clamp_min(1e-3)).unsqueeze(1)


class SpeakerFreeNoise(nn.Module):
    """Noise from a private generator: depends on nothing the speaker does."""

    def __init__(self, width: int = 8, seed: int = 0) -> None:
        super().__init__()
        self.width = width
        self.generator = torch.Generator().manual_seed(seed)

    def forward(self, reference: torch.Tensor) -> torch.Tensor:
        return torch.randn(reference.shape[0], self.width, generator=self.generator)


class PlantedLeak(nn.Module):
    """Layers ``pitch`` (leaks gender) and ``noise`` (leaks nothing), then an emotion head."""

    def __init__(self, n_classes: int = 4) -> None:
        super().__init__()
        self.pitch = VoicedPitch()
        self.noise = SpeakerFreeNoise()
        self.head = nn.Linear(1 + self.noise.width, n_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        pitch = self.pitch(features)
        return self.head(torch.cat([pitch, self.noise(pitch)], dim=1))


def planted_leak_model(seed: int = 0) -> EagerTorchModel:
    torch.manual_seed(seed)
    return EagerTorchModel(PlantedLeak(), LLD_FRONTEND)


class ConditionedOnReference(nn.Module):
    """A two-input model in the manner of P4: an embedding of a neutral utterance of the same
    speaker is added to the main branch. Layers ``speaker_embedding`` and ``conditioned``."""

    def __init__(self, n_classes: int = 4, channels: int = 32) -> None:
        super().__init__()
        self.speaker_embedding = nn.Sequential(nn.Conv1d(channels, 8, 3, padding=1), nn.AdaptiveAvgPool1d(1))
        self.main = nn.Conv1d(channels, 8, 3, padding=1)
        self.conditioned = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool1d(1)
        self.flatten = nn.Flatten()
        self.head = nn.Linear(8, n_classes)

    def forward(self, features: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        condition = self.speaker_embedding(reference)  # [batch, 8, 1]
        hidden = self.conditioned(self.main(features) + condition)
        return self.head(self.flatten(self.pool(hidden)))


TWO_INPUT_FRONTEND = LLD_FRONTEND.model_copy(
    update={"extra_inputs": [ExtraInput(name="reference", source="neutral_same_speaker")]}
)


def two_input_model(seed: int = 0) -> EagerTorchModel:
    torch.manual_seed(seed)
    return EagerTorchModel(ConditionedOnReference(), TWO_INPUT_FRONTEND)


class PitchTrack(nn.Module):
    """Per-frame log F0, unvoiced frames filled with the utterance's voiced median: ``[batch, 32, time]`` to
    ``[batch, 4, time]`` (four copies, so it looks like a small feature map)."""

    def forward(self, descriptors: torch.Tensor) -> torch.Tensor:
        f0 = descriptors[:, F0_CHANNEL]
        voiced = f0 > 0
        median = torch.nanmedian(torch.where(voiced, f0, torch.full_like(f0, float("nan"))), dim=-1, keepdim=True).values
        filled = torch.where(voiced, f0, torch.nan_to_num(median, nan=1.0).expand_as(f0))
        return torch.log(filled.clamp_min(1e-3)).unsqueeze(1).repeat(1, 4, 1)


class FrameNoise(nn.Module):
    """Standard normal noise shaped like its input: a map that carries nothing about anyone."""

    def forward(self, like: torch.Tensor) -> torch.Tensor:
        return torch.randn_like(like)


class PlantedMaps(nn.Module):
    """A small convolutional target with two tapped maps: ``pitch`` (leaks gender on every frame) and
    ``noise`` (leaks nothing), mixed by a convolution, pooled over time, then an emotion head.

    The part after ``pitch`` depends on the tap alone, so a same-architecture attacker can be cut
    from it; the part after ``noise`` also reads ``pitch`` (computed before it), so it cannot.
    """

    def __init__(self, n_classes: int = 4) -> None:
        super().__init__()
        self.pitch = PitchTrack()
        self.noise = FrameNoise()
        self.mix = nn.Conv1d(8, 8, 3, padding=1)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool1d(1)
        self.flatten = nn.Flatten()
        self.head = nn.Linear(8, n_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        pitch = self.pitch(features)
        both = torch.cat([pitch, self.noise(pitch)], dim=1)
        return self.head(self.flatten(self.pool(self.relu(self.mix(both)))))


def planted_maps_model(seed: int = 0) -> EagerTorchModel:
    torch.manual_seed(seed)
    return EagerTorchModel(PlantedMaps(), LLD_FRONTEND)


class PlantedCNN(nn.Module):
    """A small convolutional target with P0's tap points (``pool1``, ``pool2``, ``global_pool``, ``fc_relu``)
    whose every layer is gender-free, or (``leak=True``) carries the speaker's pitch throughout.

    Its first four channels are the per-frame pitch track (``leak``) or noise from a private
    generator; four more noise channels follow. Everything after reads only these, so without
    the leak no layer can know anything about the speaker: the null a whole audit must pass.
    """

    def __init__(self, n_classes: int = 4, leak: bool = False) -> None:
        super().__init__()
        self.source = PitchTrack() if leak else FrameNoise()
        self.noise = FrameNoise()
        self.conv1 = nn.Conv1d(8, 8, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.AvgPool1d(2)
        self.conv2 = nn.Conv1d(8, 8, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.AvgPool1d(2)
        self.global_pool = nn.AdaptiveAvgPool1d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(8, 8)
        self.fc_relu = nn.ReLU()
        self.classifier = nn.Linear(8, n_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        source = self.source(features) if isinstance(self.source, PitchTrack) else self.source(features[:, :4])
        x = self.pool1(self.relu1(self.conv1(torch.cat([source, self.noise(features[:, :4])], dim=1))))
        x = self.global_pool(self.pool2(self.relu2(self.conv2(x))))
        return self.classifier(self.fc_relu(self.fc(self.flatten(x))))


def write_planted_cnn(folder: Path, *, leak: bool, seed: int = 0) -> tuple[str, Path]:
    """``PlantedCNN`` as a user would hand it over: (``python:`` MODEL string, ``--weights`` file)."""
    from ser_audit.frontend.spec import METADATA_KEY

    torch.manual_seed(seed)
    module = PlantedCNN(leak=leak)
    weights = folder / f"planted-cnn-{'leak' if leak else 'null'}-{seed}.pt"
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": module.state_dict(), "config": {"leak": leak},
                METADATA_KEY: LLD_FRONTEND.model_dump_json()}, weights)
    return "python:ser_audit.testing:PlantedCNN", weights
