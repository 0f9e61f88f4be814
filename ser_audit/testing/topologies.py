"""One small model of every topology a user may hand over, for the model-contract suite.

Each reads P0's 32 LLD channels (``[batch, 32, time]``), or the waveform (``WAVEFORM_TOPOLOGIES``:
a wav2vec2-shaped encoder, a CREPE-shaped frame-batched network), so the speaker's voice
reaches every layer through random weights: a probe on some tapped layer must find gender
well above chance. None is trained; the contract is about tapping, cutting and differentiating, not
about emotion.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ser_audit.frontend.spec import Features, FrontEndSpec

# Log-compressed descriptors keep F0 (Hz) and MFCCs on one scale without saturating the
# recurrent gates.


def _compress(features: torch.Tensor) -> torch.Tensor:
    return torch.sign(features) * torch.log1p(features.abs())


class TinyCNN(nn.Module):
    """conv → pool → conv → pool → global pool → fc → classifier."""

    def __init__(self, n_classes: int = 4) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(32, 16, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool1d(2)
        self.conv2 = nn.Conv1d(16, 16, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.AdaptiveAvgPool1d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(16, 16)
        self.fc_relu = nn.ReLU()
        self.classifier = nn.Linear(16, n_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.relu1(self.conv1(_compress(features))))
        x = self.flatten(self.pool2(self.relu2(self.conv2(x))))
        return self.classifier(self.fc_relu(self.fc(x)))


class ResidualBlock(nn.Module):
    """Two convolutions and a shortcut; the sum is the block's own operation, so the block is a layer."""

    def __init__(self, channels_in: int, channels_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(channels_in, channels_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm1d(channels_out)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv1d(channels_out, channels_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm1d(channels_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or channels_in != channels_out:
            self.shortcut = nn.Sequential(nn.Conv1d(channels_in, channels_out, 1, stride=stride, bias=False),
                                          nn.BatchNorm1d(channels_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return torch.relu(out + self.shortcut(x))


class TinyResNet(nn.Module):
    """stem → two stages of residual blocks → global average pool → classifier."""

    def __init__(self, n_classes: int = 4) -> None:
        super().__init__()
        self.stem = nn.Conv1d(32, 16, 3, padding=1)
        self.layer1 = nn.Sequential(ResidualBlock(16, 16), ResidualBlock(16, 16))
        self.layer2 = nn.Sequential(ResidualBlock(16, 32, stride=2), ResidualBlock(32, 32))
        self.pool = nn.AdaptiveAvgPool1d(1)
        self.flatten = nn.Flatten()
        self.classifier = nn.Linear(32, n_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = self.layer2(self.layer1(self.stem(_compress(features))))
        return self.classifier(self.flatten(self.pool(x)))


class TinyRecurrent(nn.Module):
    """Two stacked recurrent layers (separate modules, so each is a tap) → projection → mean over time → classifier.
    ``cell`` is ``lstm`` or ``gru``; ``batch_first=False`` exercises time-major outputs."""

    def __init__(self, n_classes: int = 4, cell: str = "lstm", batch_first: bool = True) -> None:
        super().__init__()
        recurrent = {"lstm": nn.LSTM, "gru": nn.GRU}[cell]
        self.batch_first = batch_first
        self.rnn1 = recurrent(32, 16, batch_first=batch_first)
        self.rnn2 = recurrent(16, 16, batch_first=batch_first)
        self.projection = nn.Linear(16, 16)
        self.projection_relu = nn.ReLU()
        self.classifier = nn.Linear(16, n_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = _compress(features).transpose(1, 2)  # [batch, time, 32]
        if not self.batch_first:
            x = x.transpose(0, 1)
        x, _ = self.rnn1(x)
        x, _ = self.rnn2(x)
        x = self.projection_relu(self.projection(x))
        return self.classifier(x.mean(dim=1 if self.batch_first else 0))


def tiny_lstm(n_classes: int = 4) -> TinyRecurrent:
    return TinyRecurrent(n_classes, cell="lstm")


def tiny_gru(n_classes: int = 4) -> TinyRecurrent:
    return TinyRecurrent(n_classes, cell="gru")


class TinyCRNN(nn.Module):
    """conv → pool → GRU over the pooled frames → mean over time → classifier: the GRU output is
    ``[batch, time, hidden]`` while the input is ``[batch, freq, time]``."""

    def __init__(self, n_classes: int = 4) -> None:
        super().__init__()
        self.conv = nn.Conv1d(32, 16, 3, padding=1)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool1d(2)
        self.gru = nn.GRU(16, 16, batch_first=True)
        self.classifier = nn.Linear(16, n_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.relu(self.conv(_compress(features))))
        x, _ = self.gru(x.transpose(1, 2))
        return self.classifier(x.mean(dim=1))


class EncoderBlock(nn.Module):
    """Self-attention and a feed-forward layer; returns ``(hidden, attention weights)`` as many encoders do."""

    def __init__(self, width: int = 16, heads: int = 2) -> None:
        super().__init__()
        self.attention = nn.MultiheadAttention(width, heads, batch_first=True)
        self.norm1 = nn.LayerNorm(width)
        self.feed_forward = nn.Sequential(nn.Linear(width, 32), nn.ReLU(), nn.Linear(32, width))
        self.norm2 = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        attended, weights = self.attention(x, x, x, need_weights=True)
        x = self.norm1(x + attended)
        return self.norm2(x + self.feed_forward(x)), weights


class TinyTransformer(nn.Module):
    """Input projection → two encoder blocks (tuple outputs) → mean over time → classifier."""

    def __init__(self, n_classes: int = 4) -> None:
        super().__init__()
        self.input_projection = nn.Linear(32, 16)
        self.block1 = EncoderBlock()
        self.block2 = EncoderBlock()
        self.classifier = nn.Linear(16, n_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = self.input_projection(_compress(features).transpose(1, 2))
        x, _ = self.block1(x)
        x, _ = self.block2(x)
        return self.classifier(x.mean(dim=1))


class TinyTwoInput(nn.Module):
    """P4's shape: a neutral reference utterance of the same speaker conditions the main branch."""

    def __init__(self, n_classes: int = 4) -> None:
        super().__init__()
        self.reference_conv = nn.Conv1d(32, 16, 3, padding=1)
        self.reference_pool = nn.AdaptiveAvgPool1d(1)
        self.conv = nn.Conv1d(32, 16, 3, padding=1)
        self.conditioned = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool1d(1)
        self.flatten = nn.Flatten()
        self.classifier = nn.Linear(16, n_classes)

    def forward(self, features: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        condition = self.reference_pool(self.reference_conv(_compress(reference)))
        hidden = self.conditioned(self.conv(_compress(features)) + condition)
        return self.classifier(self.flatten(self.pool(hidden)))


class _PreNormBlock(nn.Module):
    """A pre-LN transformer block as wav2vec2-style encoders have (attention, feed-forward, residuals)."""

    def __init__(self, width: int = 16, heads: int = 2) -> None:
        super().__init__()
        self.layer_norm = nn.LayerNorm(width)
        self.attention = nn.MultiheadAttention(width, heads, batch_first=True)
        self.final_layer_norm = nn.LayerNorm(width)
        self.feed_forward = nn.Sequential(nn.Linear(width, 32), nn.GELU(), nn.Linear(32, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        normed = self.layer_norm(x)
        x = x + self.attention(normed, normed, normed, need_weights=False)[0]
        return x + self.feed_forward(self.final_layer_norm(x))


# One second of 16 kHz audio as the model's only input, for the topologies that read the waveform.
WAVEFORM_FRONTEND = FrontEndSpec(features=Features(kind="waveform"), layout=["batch", "time"], duration_s=1.0,
                                 emotions=["neutral", "happy", "sad", "angry"])

# Bands between typical male (~120 Hz) and female (~210 Hz) F0.
PITCH_BANDS_HZ = (90.0, 110.0, 130.0, 150.0, 170.0, 190.0, 210.0, 230.0, 260.0, 300.0)


class PitchBands(nn.Module):
    """Log energy in narrow bands over the F0 range, 25 ms windows every ``hop`` samples: ``[n, 1, samples]``
    to ``[n, bands, windows]``. The fixed filters a waveform front-end may start with (SincNet's, say), so
    that random layers above them see the speaker's F0."""

    def __init__(self, window: int = 400, hop: int = 160, sample_rate: int = 16_000) -> None:
        super().__init__()
        t = torch.arange(window) / sample_rate
        hann = torch.hann_window(window)
        filters = [hann * torch.cos(2 * torch.pi * f * t) for f in PITCH_BANDS_HZ]
        filters += [hann * torch.sin(2 * torch.pi * f * t) for f in PITCH_BANDS_HZ]
        self.bank = nn.Conv1d(1, 2 * len(PITCH_BANDS_HZ), window, stride=hop, bias=False)
        self.bank.weight.data = torch.stack(filters)[:, None]

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        response = self.bank(waveform).square()
        half = response.shape[1] // 2
        return torch.log(response[:, :half] + response[:, half:] + 1e-6)


class _Encoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleList([_PreNormBlock(), _PreNormBlock()])
        self.layer_norm = nn.LayerNorm(16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.layers:
            x = block(x)
        return self.layer_norm(x)


class _Backbone(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.feature_extractor = nn.Sequential(PitchBands(hop=320), nn.Conv1d(len(PITCH_BANDS_HZ), 16, 3, padding=1), nn.GELU())
        self.feature_projection = nn.Sequential(nn.LayerNorm(16), nn.Linear(16, 16))
        self.encoder = _Encoder()

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        features = self.feature_extractor(waveform.unsqueeze(1)).transpose(1, 2)
        return self.encoder(self.feature_projection(features))


class TinyWav2Vec2(nn.Module):
    """wav2vec2's shape on the waveform, named as transformers names it: a strided convolutional feature
    encoder (320 samples a frame), a projection, pre-LN blocks ``wav2vec2.encoder.layers.N``, a closing
    norm, ``projector``, the mean over time and ``classifier``."""

    def __init__(self, n_classes: int = 4) -> None:
        super().__init__()
        self.wav2vec2 = _Backbone()
        self.projector = nn.Linear(16, 8)
        self.classifier = nn.Linear(8, n_classes)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.projector(self.wav2vec2(waveform)).mean(1))


class TinyFrameBatched(nn.Module):
    """CREPE's shape: 1024-sample frames of every utterance as one batch (``[batch * frames, 1, 1024]``)
    through a pitch filter bank, a convolution and a pool, then regrouped per utterance, averaged and
    classified."""

    def __init__(self, n_classes: int = 4) -> None:
        super().__init__()
        self.pitch = PitchBands(hop=200)
        self.conv = nn.Conv1d(len(PITCH_BANDS_HZ), 16, 3, padding=1)
        self.relu = nn.ReLU()
        self.frame_pool = nn.AdaptiveAvgPool1d(1)
        self.flatten = nn.Flatten()
        self.projection = nn.Linear(16, 16)
        self.classifier = nn.Linear(16, n_classes)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        batch = waveform.shape[0]
        frames = waveform.unfold(1, 1024, 512).reshape(-1, 1, 1024)
        hidden = self.projection(self.flatten(self.frame_pool(self.relu(self.conv(self.pitch(frames))))))
        return self.classifier(hidden.reshape(batch, -1, hidden.shape[-1]).mean(1))


# Topologies that read the waveform instead of the 32 descriptors.
WAVEFORM_TOPOLOGIES = ("wav2vec2", "frames")

TOPOLOGIES: dict[str, Callable[..., nn.Module]] = {
    "cnn": TinyCNN,
    "resnet": TinyResNet,
    "lstm": tiny_lstm,
    "gru": tiny_gru,
    "crnn": TinyCRNN,
    "transformer": TinyTransformer,
    "two-input": TinyTwoInput,
    "wav2vec2": TinyWav2Vec2,
    "frames": TinyFrameBatched,
}
