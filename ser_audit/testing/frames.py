"""A frame-batched target, CREPE-like: a network on 1024-sample frames, the frames of every utterance
run as one batch, under an emotion head that regroups them per utterance.

``FrameBatchedEmotion`` takes the waveform ``[batch, samples]``, cuts it into frames of 1024 samples
every 512, and runs its frame layers on ``[batch * frames, 1, 1024]``: ``pitch`` (log energy in bands
over the F0 range, so it carries the speaker's pitch, a gender cue; ``leak=False`` puts noise there),
``noise`` (noise shaped like it: carries nothing about anyone), then a convolution, a pool over each
frame and a projection; the head reshapes to ``[batch, frames, 16]``, averages over the frames and
classifies. Nothing is trained. ``CrossUtteranceFrames`` frames the batch's audio as one stream, so
frames straddle utterances: its frame layers cannot be regrouped per utterance.

>>> import torch
>>> FrameBatchedEmotion()(torch.zeros(2, 16_000)).shape
torch.Size([2, 4])
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ser_audit.frontend.spec import METADATA_KEY
from ser_audit.testing.topologies import PITCH_BANDS_HZ, WAVEFORM_FRONTEND, PitchBands

FRAME = 1024
HOP = 512

FRAMES_FRONTEND = WAVEFORM_FRONTEND.model_copy(update={"input_name": "audio"})


class FramePitch(PitchBands):
    """``PitchBands`` over each frame, 25 ms windows every 12.5 ms: ``[frames, 1, 1024]`` to
    ``[frames, bands, 4]``; noise of that shape without ``leak``."""

    def __init__(self, leak: bool = True) -> None:
        super().__init__(hop=200)
        self.leak = leak

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        energy = super().forward(frames)
        return energy if self.leak else torch.randn_like(energy)


class NoiseLike(nn.Module):
    """Standard normal noise shaped like its input: carries nothing about anyone."""

    def forward(self, like: torch.Tensor) -> torch.Tensor:
        return torch.randn_like(like)


class FrameBatchedEmotion(nn.Module):
    """Frames as the batch: ``pitch`` and ``noise`` → ``conv`` → ``frame_pool`` → ``projection``, each
    ``[batch * frames, ...]``; then per utterance: mean over frames → ``head``."""

    def __init__(self, n_classes: int = 4, leak: bool = True) -> None:
        super().__init__()
        self.pitch = FramePitch(leak=leak)
        self.noise = NoiseLike()
        self.conv = nn.Conv1d(2 * len(PITCH_BANDS_HZ), 16, 3, padding=1)  # pitch and noise bands
        self.relu = nn.ReLU()
        self.frame_pool = nn.AdaptiveAvgPool1d(1)
        self.flatten = nn.Flatten()
        self.projection = nn.Linear(16, 16)
        self.head = nn.Linear(16, n_classes)

    def frames(self, audio: torch.Tensor) -> torch.Tensor:
        """``[batch, samples]`` to ``[batch * frames, 1, 1024]``, utterance by utterance."""
        framed = audio.unfold(1, FRAME, HOP)
        return framed.reshape(-1, 1, FRAME)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        batch = audio.shape[0]
        pitch = self.pitch(self.frames(audio))
        hidden = self.flatten(self.frame_pool(self.relu(self.conv(torch.cat([pitch, self.noise(pitch)], dim=1)))))
        per_frame = self.projection(hidden)
        return self.head(per_frame.reshape(batch, -1, per_frame.shape[-1]).mean(dim=1))


class CrossUtteranceFrames(FrameBatchedEmotion):
    """The batch's audio framed as one stream: ``batch * samples / 512 - 1`` frames, some straddling two
    utterances, so no frame layer regroups per utterance."""

    def frames(self, audio: torch.Tensor) -> torch.Tensor:
        return audio.reshape(1, -1).unfold(1, FRAME, HOP).reshape(-1, 1, FRAME)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        pitch = self.pitch(self.frames(audio))
        hidden = self.flatten(self.frame_pool(self.relu(self.conv(torch.cat([pitch, self.noise(pitch)], dim=1)))))
        pooled = self.projection(hidden).mean(dim=0, keepdim=True)
        return self.head(pooled).expand(audio.shape[0], -1)


def write_frame_batched(folder: Path, *, leak: bool = True, cross_utterance: bool = False,
                        seed: int = 0) -> tuple[str, Path]:
    """The model as a user hands it over: (``python:`` MODEL string, ``--weights`` file with its spec)."""
    torch.manual_seed(seed)
    factory = "CrossUtteranceFrames" if cross_utterance else "FrameBatchedEmotion"
    module = CrossUtteranceFrames() if cross_utterance else FrameBatchedEmotion(leak=leak)
    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / f"{factory}-{'leak' if leak else 'null'}-{seed}.pt"
    torch.save({"state_dict": module.state_dict(), "config": {"leak": leak} if not cross_utterance else {},
                METADATA_KEY: FRAMES_FRONTEND.model_dump_json()}, weights)
    return f"python:ser_audit.testing.frames:{factory}", weights
