"""P4's speaker-conditioned eResNet and its two baselines (Triantafyllopoulos, Liu, Schuller, ICME 2021).

- ``eresnet``: a main ResNet of 8 conditional residual blocks (two 3x3 convs with batch norm
  and ReLU each), a conv over the frequency axis, temporal average pooling and two linear
  layers with ReLU between. An embedding sub-network (4 standard residual blocks, a frequency
  conv, temporal average pooling, a linear layer) reads one neutral utterance of the same
  speaker; a linear projection of its embedding is added to the output of both convs of every
  conditional block (:class:`ConditionalBlock`).
- ``twochannel``: the plain ResNet with the neutral utterance stacked as a second input channel
  (cut or repeated to the utterance's length inside the model, since the two differ at test).
- ``resnet-p4``: the plain ResNet, one input.

Input: log power spectrogram, 25 ms window every 10 ms (400-point FFT at 16 kHz, 201 bins),
each segment's waveform peak-normalised first. Training draws random crops (P4: 4.5 s of
IEMOCAP's utterances, which average about 4.5 s; here 2 s of utterances averaging 2.75 s) and,
for the two-input models, a random neutral utterance of the same speaker per example; tests run
on whole utterances with a fixed reference (``ser_audit.models.sampling``). Loss: cross-entropy
weighted by inverse class frequency; SGD.

Layers an audit taps by default: both stems' pooling, the 4 embedding blocks, the embedding
itself (``embedding.linear``, read by every block's projections), the 8 conditioned blocks
(``blocks.0`` ... ``blocks.7``, each a residual sum) and the last hidden layer.

Scaled to train on one CPU thread in minutes, the factors in ``config`` (so in the model's
metadata): ``width`` multiplies P4-like channel counts (16/32/64/128 for the four pairs of main
blocks; width 1/4: 4/8/16/32), the stems stride 2 and max-pool 2 (a 4x smaller map in each axis
before the first block), the embedding has ``embedding_size`` dimensions, and SGD runs at a
higher rate with momentum than P4's plain lr 1e-3 (see ``EMOTION``).
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from ser_audit.frontend.spec import ExtraInput, Features, FrontEndSpec
from ser_audit.models.zoo import ReferenceModel, Stage

CHANNELS = (16, 32, 64, 128)  # per pair of main blocks, at width 1
EMBEDDING_CHANNELS = (16, 32, 64, 128)  # per embedding block, at width 1
N_BINS = 201  # 400-point FFT


def _conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)


def _shortcut(in_channels: int, out_channels: int, stride: int) -> nn.Module:
    if stride == 1 and in_channels == out_channels:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels))


class ResidualBlock(nn.Module):
    """Two 3x3 convs with batch norm and ReLU, and a residual connection (the embedding's blocks, the plain ResNet's)."""

    def __init__(self, in_channels: int, out_channels: int, *, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = _conv3x3(in_channels, out_channels, stride)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = _conv3x3(out_channels, out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = _shortcut(in_channels, out_channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ConditionalBlock(ResidualBlock):
    """P4's conditional residual block: the projected speaker embedding is added to the output of both convs.

    ``forward(x, embedding)``: ``relu(bn1(conv1(x) + p1(e)))``, then
    ``relu(bn2(conv2(.) + p2(e)) + shortcut(x))``, with ``p1``, ``p2`` linear projections of the
    embedding to the conv's channels, broadcast over frequency and time.
    """

    def __init__(self, in_channels: int, out_channels: int, *, embedding_size: int, stride: int = 1) -> None:
        super().__init__(in_channels, out_channels, stride=stride)
        self.project1 = nn.Linear(embedding_size, out_channels)
        self.project2 = nn.Linear(embedding_size, out_channels)

    def forward(self, x: torch.Tensor, embedding: torch.Tensor | None = None) -> torch.Tensor:
        assert embedding is not None
        out = torch.relu(self.bn1(self.conv1(x) + self.project1(embedding)[:, :, None, None]))
        out = self.bn2(self.conv2(out) + self.project2(embedding)[:, :, None, None])
        return torch.relu(out + self.shortcut(x))


def _stem(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1, bias=False),
                         nn.BatchNorm2d(out_channels), nn.ReLU(), nn.MaxPool2d(2))


def _frequency_size(bins: int, strides: int) -> int:
    """Frequency bins left after the stem (stride 2, pool 2) and ``strides`` stride-2 blocks."""
    size = (bins + 1) // 2 // 2
    for _ in range(strides):
        size = (size + 1) // 2
    return size


def _scaled(channels: tuple[int, ...], width: float) -> list[int]:
    return [max(4, int(round(c * width))) for c in channels]


class EmbeddingNetwork(nn.Module):
    """P4's embedding sub-network: a stem, 4 standard residual blocks, a conv over the whole
    frequency axis, temporal average pooling and a linear layer. ``[batch, 1, freq, time]`` to
    ``[batch, embedding_size]``; any number of frames."""

    def __init__(self, *, width: float, embedding_size: int, bins: int = N_BINS) -> None:
        super().__init__()
        channels = _scaled(EMBEDDING_CHANNELS, width)
        self.stem = _stem(1, channels[0])
        blocks, previous = [], channels[0]
        for index, count in enumerate(channels):
            blocks.append(ResidualBlock(previous, count, stride=1 if index == 0 else 2))
            previous = count
        self.blocks = nn.Sequential(*blocks)
        self.frequency_conv = nn.Conv2d(previous, previous, kernel_size=(_frequency_size(bins, len(channels) - 1), 1))
        self.linear = nn.Linear(previous, embedding_size)

    def forward(self, reference: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.frequency_conv(self.blocks(self.stem(reference))))  # [batch, channels, 1, time]
        return self.linear(x.mean(dim=(2, 3)))


class P4ResNet(nn.Module):
    """P4's main network; conditioned on a speaker embedding (eResNet), on a stacked second
    channel (TwoChannel) or on nothing (the plain ResNet).

    Args:
        n_classes: Emotions.
        width: Channel multiplier (1: 16/32/64/128 for the four pairs of blocks).
        conditioning: ``embedding`` (eResNet: a second input through :class:`EmbeddingNetwork`),
            ``channel`` (TwoChannel: a second input stacked on the first) or ``none``.
        embedding_size: Size of the speaker embedding (eResNet).
        hidden: Width of the first of the two linear layers.
        bins: Frequency bins of the input.
    """

    def __init__(self, n_classes: int, *, width: float = 1.0, conditioning: str = "none", embedding_size: int = 32,
                 hidden: int = 64, bins: int = N_BINS) -> None:
        super().__init__()
        if conditioning not in ("embedding", "channel", "none"):
            raise ValueError(f"conditioning {conditioning!r}: use embedding, channel or none")
        self.conditioning = conditioning
        channels = _scaled(CHANNELS, width)
        self.stem = _stem(2 if conditioning == "channel" else 1, channels[0])
        if conditioning == "embedding":
            self.embedding = EmbeddingNetwork(width=width, embedding_size=embedding_size, bins=bins)
        blocks: list[nn.Module] = []
        previous = channels[0]
        for index in range(8):
            count, stride = channels[index // 2], 2 if index % 2 == 0 and index > 0 else 1
            blocks.append(ConditionalBlock(previous, count, embedding_size=embedding_size, stride=stride)
                          if conditioning == "embedding" else ResidualBlock(previous, count, stride=stride))
            previous = count
        self.blocks = nn.ModuleList(blocks)
        self.frequency_conv = nn.Conv2d(previous, previous, kernel_size=(_frequency_size(bins, 3), 1))
        self.fc = nn.Linear(previous, hidden)
        self.fc_relu = nn.ReLU()
        self.classifier = nn.Linear(hidden, n_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, features: torch.Tensor, reference: torch.Tensor | None = None) -> torch.Tensor:
        embedding = None
        if self.conditioning == "embedding":
            assert reference is not None, "eResNet needs the neutral reference as its second input"
            embedding = self.embedding(reference)
        x = features
        if self.conditioning == "channel":
            assert reference is not None, "TwoChannel needs the neutral reference as its second input"
            x = torch.cat([features, fit_frames(reference, features.shape[-1])], dim=1)
        x = self.stem(x)
        for block in self.blocks:
            x = block(x, embedding) if embedding is not None else block(x)
        x = torch.relu(self.frequency_conv(x)).mean(dim=(2, 3))  # temporal average pooling (frequency is 1)
        return self.classifier(self.fc_relu(self.fc(x)))


def fit_frames(reference: torch.Tensor, frames: int) -> torch.Tensor:
    """The reference's frames cut (from the start) or repeated to ``frames``, to stack it as a channel."""
    if reference.shape[-1] < frames:
        reference = reference.repeat(*([1] * (reference.dim() - 1)), -(-frames // reference.shape[-1]))
    return reference[..., :frames]


def build(n_classes: int = 4, **config: float | str) -> P4ResNet:
    return P4ResNet(n_classes, **config)  # type: ignore[arg-type]


# P4: log-spectrogram, 25 ms window, 10 ms hop, per-segment peak normalisation; whole utterances at test.
LOG_SPECTROGRAM_P4 = FrontEndSpec(
    sample_rate=16_000,
    features=Features(kind="spectrogram", n_fft=400, win_length=400, hop_length=160, window="hann", power=2.0,
                      log_offset=1e-10, peak_normalise=True),
    layout=["batch", "channel", "freq", "time"],
    duration_s=None,
    emotions=[],
)
WITH_REFERENCE = LOG_SPECTROGRAM_P4.model_copy(
    update={"extra_inputs": [ExtraInput(name="reference", source="neutral_same_speaker")]}
)

WIDTH = 0.25
CONFIG = {"width": WIDTH, "hidden": 64}
SCALING = "width 1/4 (4/8/16/32 channels), stems stride 2 + max-pool 2"
CROP_S = 2.0  # P4: 4.5 s on IEMOCAP, about its mean utterance; 2 s of the embedded corpus's 2.75 s mean

# P4: SGD lr 1e-3, weight decay 5e-3, 30 epochs, batch 8-32. Scaled to the CPU budget and the
# small corpus: 40 epochs of 320 utterances at rate 3e-3 with momentum 0.9, divided by 10 for the
# last quarter, weight decay 5e-4. Plain SGD at 1e-3 barely moved in that many steps, and at
# weight decay 5e-3 TwoChannel did not fit even its training data (training UAR 0.32).
EPOCHS = 40
EMOTION = Stage(
    corpus="iemocap-like", target="emotion", epochs=EPOCHS, batch_size=16, optimiser="sgd", learning_rate=3e-3,
    momentum=0.9, weight_decay=5e-4, lr_milestones=(30,), class_weighted=True,
    random_crop_s=CROP_S, random_reference=True,
)

PAPER = "P4 (Triantafyllopoulos, Liu, Schuller: deep speaker conditioning, ICME 2021)"

ERESNET_ENTRY = ReferenceModel(
    name="eresnet",
    paper=PAPER,
    description=f"eResNet: 8 conditional residual blocks + a speaker embedding of a neutral utterance added after "
    f"every conv; log-spectrogram, whole utterances at test; {SCALING}, embedding 32",
    build=build,
    config={**CONFIG, "conditioning": "embedding", "embedding_size": 32},
    frontend=WITH_REFERENCE,
    training=EMOTION,
)

TWOCHANNEL_ENTRY = replace(
    ERESNET_ENTRY,
    name="twochannel",
    description=f"TwoChannel: the plain 8-block ResNet with a neutral utterance of the speaker as a second input "
    f"channel; {SCALING}",
    config={**CONFIG, "conditioning": "channel"},
)

RESNET_P4_ENTRY = replace(
    ERESNET_ENTRY,
    name="resnet-p4",
    description=f"P4's plain ResNet baseline: 8 residual blocks, no conditioning; {SCALING}",
    config={**CONFIG, "conditioning": "none"},
    frontend=LOG_SPECTROGRAM_P4,
    training=replace(EMOTION, random_reference=False),
)
