"""ResNet-20 of P1 (Xi et al.): a speaker-identification backbone carried over to emotion.

P1's network: conv 7x7/32 (stride 1), max pool 3x3 stride 2, three stages of three basic
blocks ([3x3, 32]x2, [3x3, 64]x2, [3x3, 128]x2), global average pooling, FC 256, classes. The
last conv of each stage has stride 2 and doubles the channels; here it doubles them into the
next stage's width (32 -> 64, 64 -> 128) and the last conv of stage 3 keeps 128, so every conv
has the width P1's table gives its stage. A projection shortcut (1x1 conv, batch norm) meets
each stride-2 conv. Block outputs (``stage1.0`` ... ``stage3.2``, a residual sum) are default
taps, so a leakage audit gets a depth curve at every block of every stage.

Three zoo entries share one speaker-ID pretraining stage (P1's 50 VoxCeleb2 speakers are the
``voxceleb-like`` corpus):

- ``resnet20``: P1's "plain" baseline, trained from scratch on emotion.
- ``resnet20-finetune``: speaker ID, then every parameter fine-tuned on emotion.
- ``resnet20-adapter``: speaker ID, then P1's residual adapters: every 3x3 conv computes
  ``f(x) = w * x + alpha * x`` with ``alpha`` a parallel 1x1 conv (:class:`AdaptedConv2d`),
  followed by the domain's batch norm; the shared filters stay frozen and only the adapters,
  the batch norms and the head (FC 256, classifier) train.

The recipe contract runs every stage on one architecture, so the adapters exist from the start:
zero-initialised (``alpha * x`` is exactly 0) and frozen in stage 1, they leave the speaker
stage bit-for-bit that of ``resnet20-finetune`` (same seed, same random stream: the zeros draw
no random numbers). The zoo caches whole models, not stages, so each of the two entries
trains that stage itself. The batch norm after each conv is the domain-specific one: it trains in
both stages, so the emotion domain's starts from the speaker domain's values rather than
from scratch (P1 does not say how it is initialised; the contract carries every shape-compatible
parameter over between stages and has no way to re-initialise one).

Scaled to train on 2 CPU cores in minutes, with the factors in ``config`` (and so in the
model's metadata): ``width`` multiplies the channels (1/4: 8/16/32), ``stem_stride`` is the
input scaling (2 halves both input axes in the 7x7 conv; P1 uses 1), and the front-end uses a
640-point FFT, one 40 ms window without zero padding, where P1 pads it to 1600 points (bins
every 25 Hz instead of 10 Hz: 161 bins up to 4 kHz instead of 400). Each utterance gives one
centred 2 s piece; P1 cuts 2 s pieces with 1 s overlap, which the training contract does not
do (one fixed-length input per utterance).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import replace

import torch
import torch.nn.functional as functional
from torch import nn

from ser_audit.frontend.spec import Features, FrontEndSpec
from ser_audit.models.zoo import ParameterGroup, ReferenceModel, Stage

CHANNELS = (32, 64, 128)
BLOCKS_PER_STAGE = 3


class AdaptedConv2d(nn.Conv2d):
    """A 3x3 conv with P1's parallel residual adapter: ``f(x) = w * x + alpha * x``.

    ``weight`` is the shared 3x3 filter ``w``; ``adapter`` is the domain-specific 1x1 filter
    ``alpha``, zero at construction (so the conv starts as the plain one) and drawn from no
    random stream (so a model with adapters initialises its other weights like one without).
    """

    def __init__(self, in_channels: int, out_channels: int, *, stride: int = 1) -> None:
        super().__init__(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)
        self.adapter = nn.Parameter(torch.zeros(out_channels, in_channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) + functional.conv2d(x, self.adapter, stride=self.stride)


def _conv3x3(in_channels: int, out_channels: int, *, stride: int, adapters: bool) -> nn.Conv2d:
    if adapters:
        return AdaptedConv2d(in_channels, out_channels, stride=stride)
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convs with batch norm and a residual connection; the second conv may stride and widen."""

    def __init__(self, in_channels: int, out_channels: int, *, stride: int = 1, adapters: bool = False) -> None:
        super().__init__()
        self.conv1 = _conv3x3(in_channels, in_channels, stride=1, adapters=adapters)
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.relu = nn.ReLU()
        self.conv2 = _conv3x3(in_channels, out_channels, stride=stride, adapters=adapters)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        # The block's own sum, not a child's output: the audit lists the block as a tap.
        return torch.relu(out + self.shortcut(x))


class ResNet20(nn.Module):
    """P1's ResNet-20 over a one-channel spectrogram ``[batch, 1, freq, time]``, output logits.

    Args:
        n_classes: Output classes (speakers in pretraining, emotions after).
        width: Channel multiplier (1 is P1's 32/64/128).
        stem_stride: Stride of the 7x7 conv (P1: 1; 2 quarters the cost of every later layer).
        hidden: Size of the fully connected layer before the classifier (P1: 256).
        adapters: Give every 3x3 conv a parallel 1x1 residual adapter (:class:`AdaptedConv2d`).
    """

    def __init__(
        self, n_classes: int, *, width: float = 1.0, stem_stride: int = 1, hidden: int = 256, adapters: bool = False
    ) -> None:
        super().__init__()
        channels = [max(4, int(round(c * width))) for c in CHANNELS]
        self.conv1 = nn.Conv2d(1, channels[0], kernel_size=7, stride=stem_stride, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(channels[0])
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        for index, count in enumerate(channels):
            widened = channels[min(index + 1, len(channels) - 1)]
            blocks: OrderedDict[str, nn.Module] = OrderedDict()
            for k in range(BLOCKS_PER_STAGE):
                last = k == BLOCKS_PER_STAGE - 1
                blocks[str(k)] = BasicBlock(count, widened if last else count, stride=2 if last else 1, adapters=adapters)
            setattr(self, f"stage{index + 1}", nn.Sequential(blocks))
        self.average_pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(channels[-1], hidden)
        self.fc_relu = nn.ReLU()
        self.classifier = nn.Linear(hidden, n_classes)
        for module in self.modules():
            if type(module) in (nn.Conv2d, AdaptedConv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(features))))
        x = self.stage3(self.stage2(self.stage1(x)))
        x = self.fc_relu(self.fc(self.flatten(self.average_pool(x))))
        return self.classifier(x)


def build(n_classes: int = 4, **config: float) -> ResNet20:
    return ResNet20(n_classes, **config)  # type: ignore[arg-type]


# P1: magnitude spectrogram, 40 ms Hamming window every 10 ms, 0-4 kHz, mu-law, 2 s pieces.
# The FFT is the window's own length (640 points) instead of P1's zero-padded 1600: FFT factor 0.4.
SPECTROGRAM_P1 = FrontEndSpec(
    sample_rate=16_000,
    features=Features(
        kind="spectrogram", n_fft=640, win_length=640, hop_length=160, window="hamming", power=1.0, f_max=4000.0, mu_law=True
    ),
    layout=["batch", "channel", "freq", "time"],
    duration_s=2.0,
    emotions=[],
)

CONFIG = {"width": 0.25, "stem_stride": 2, "hidden": 256}
SCALING = "width 1/4 (8/16/32 channels), 7x7 stem stride 2 (P1: 1), 640-point FFT (P1: 1600; 161 bins to 4 kHz)"

# Epochs scaled from P1's 30; the step schedules keep P1's proportions (speaker: /10 at 2/3 of
# the epochs; emotion: /10 at 1/3 and 2/3).
SPEAKER_EPOCHS = 15
EMOTION_EPOCHS = 15

SPEAKER_ID = Stage(
    corpus="voxceleb-like", target="speaker", epochs=SPEAKER_EPOCHS, batch_size=32, optimiser="sgd", momentum=0.9,
    nesterov=True, learning_rate=0.05, weight_decay=1e-4, lr_milestones=(round(SPEAKER_EPOCHS * 2 / 3),),
)
EMOTION = Stage(
    corpus="iemocap-like", target="emotion", epochs=EMOTION_EPOCHS, batch_size=32, optimiser="sgd", momentum=0.9,
    nesterov=True, learning_rate=0.01, weight_decay=0.005,
    lr_milestones=(round(EMOTION_EPOCHS / 3), round(EMOTION_EPOCHS * 2 / 3)),
)

# Shared filters: the 7x7 stem, every 3x3 conv, every projection shortcut (not the adapters,
# whose parameter is ``adapter``, nor the batch norms, nor the head).
SHARED_FILTERS = ("conv1.weight", "stage*.conv?.weight", "stage*.shortcut.0.weight")
ADAPTERS = ("stage*.adapter",)

PAPER = "P1 (Xi, Li, Song, Jiang, Dai: residual adapters, speaker -> emotion)"

RESNET20_ENTRY = ReferenceModel(
    name="resnet20",
    paper=PAPER,
    description=f"ResNet-20 on a mu-law spectrogram, trained from scratch on emotion; {SCALING}",
    build=build,
    config=dict(CONFIG),
    frontend=SPECTROGRAM_P1,
    training=EMOTION,
    version=1,
)

# The two pretrained variants differ from the plain model only in name, recipe and (adapters) config.
RESNET20_FINETUNE_ENTRY = replace(
    RESNET20_ENTRY,
    name="resnet20-finetune",
    config=dict(CONFIG),
    description=f"ResNet-20 pretrained on speaker ID (voxceleb-like), every parameter fine-tuned on emotion; {SCALING}",
    training=(SPEAKER_ID, EMOTION),
    version=2,  # 2: a fifth of each speaker's utterances held out of speaker ID to measure it
)

RESNET20_ADAPTER_ENTRY = replace(
    RESNET20_ENTRY,
    name="resnet20-adapter",
    description=f"ResNet-20 pretrained on speaker ID (voxceleb-like), residual adapters + batch norms trained on emotion "
    f"with the shared filters frozen; {SCALING}",
    config={**CONFIG, "adapters": True},
    training=(
        replace(SPEAKER_ID, groups=(ParameterGroup(ADAPTERS, frozen=True),)),
        replace(EMOTION, groups=(ParameterGroup(SHARED_FILTERS, frozen=True),)),
    ),
    version=2,  # 2: a fifth of each speaker's utterances held out of speaker ID to measure it
)
