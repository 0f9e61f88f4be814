"""ResNet-50 of P2 (Ren et al., ICASSP 2020): a bottleneck residual network on log-mel frames.

P2 compares CNN-4, ResNet-50 and VGG-16 under FGSM/PGD and adversarial training, all on the
same input: log-mel at 16 kHz, window 512, hop 256, 64 mel bins, padded to 373 frames. The
network is the standard ResNet-50: conv 7x7/64 stride 2, max pool 3x3 stride 2, four stages of
3, 4, 6 and 3 bottleneck blocks (1x1 reduce, 3x3, 1x1 expand by 4; base widths 64, 128, 256,
512; the first block of stages 2-4 strides by 2 in its 3x3 conv), global average pooling,
then the classifier. Here it reads a one-channel ``[batch, 1, mel, time]`` map and is
trained from scratch (no ImageNet weights offline), like CNN-4.

Every block output (``layer1.0`` ... ``layer4.2``, the residual sum) is a default tap, so a
leakage audit's depth curve has points inside every stage.

Scaled to train on 2 CPU cores in minutes, with the factor in ``config`` (and so in the
model's metadata): ``width`` multiplies every channel count (1/8: base widths 8, 16, 32, 64;
block outputs 32 to 256 channels). The depth (3-4-6-3, 16 blocks, 49 convs + classifier) and
the input size are P2's.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from ser_audit.frontend.spec import Features, FrontEndSpec
from ser_audit.models.zoo import ReferenceModel, Stage

BASE_WIDTHS = (64, 128, 256, 512)
BLOCKS_PER_STAGE = (3, 4, 6, 3)
EXPANSION = 4


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carrying the stride), 1x1 expand, each with batch norm; a projection
    shortcut where the shape changes."""

    def __init__(self, in_channels: int, width: int, *, stride: int = 1) -> None:
        super().__init__()
        out_channels = width * EXPANSION
        self.conv1 = nn.Conv2d(in_channels, width, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_channels, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        # The block's own sum, not a child's output: the audit lists the block as a tap.
        return torch.relu(out + self.shortcut(x))


class ResNet50(nn.Module):
    """P2's ResNet-50 over a one-channel log-mel map ``[batch, 1, mel, time]``, output logits.

    Args:
        n_classes: Output classes.
        width: Channel multiplier (1 is the standard 64/128/256/512 base widths).
    """

    def __init__(self, n_classes: int, *, width: float = 1.0) -> None:
        super().__init__()
        widths = [max(4, int(round(base * width))) for base in BASE_WIDTHS]
        self.conv1 = nn.Conv2d(1, widths[0], kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        previous = widths[0]
        for index, (stage_width, count) in enumerate(zip(widths, BLOCKS_PER_STAGE)):
            blocks: OrderedDict[str, nn.Module] = OrderedDict()
            for k in range(count):
                blocks[str(k)] = Bottleneck(previous, stage_width, stride=2 if k == 0 and index > 0 else 1)
                previous = stage_width * EXPANSION
            setattr(self, f"layer{index + 1}", nn.Sequential(blocks))
        self.average_pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.classifier = nn.Linear(previous, n_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        for module in self.modules():
            # Zero the last batch norm of each residual branch: each block starts as the identity,
            # which trains a deep network stably from scratch (Goyal et al. 2017).
            if isinstance(module, Bottleneck):
                nn.init.zeros_(module.bn3.weight)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(features))))
        for index in range(1, len(BLOCKS_PER_STAGE) + 1):
            x = getattr(self, f"layer{index}")(x)
        return self.classifier(self.flatten(self.average_pool(x)))


def build(n_classes: int = 4, **config: float) -> ResNet50:
    return ResNet50(n_classes, width=config.get("width", 1.0))


# P2: 16 kHz, window 512, hop 256, 64 mel bins, padded to 373 frames. A centred STFT gives
# 1 + samples // hop frames, so 372 hops (5.952 s) make exactly 373.
FRAMES_P2 = 373
LOG_MEL_373 = FrontEndSpec(
    sample_rate=16_000,
    features=Features(kind="log_mel", n_fft=512, hop_length=256, n_mels=64),
    layout=["batch", "channel", "freq", "time"],
    duration_s=(FRAMES_P2 - 1) * 256 / 16_000,
    crop="start",
    emotions=[],
)

RESNET50_ENTRY = ReferenceModel(
    name="resnet50",
    paper="P2 (Ren et al., ICASSP 2020)",
    description="ResNet-50 (bottleneck 3-4-6-3) on 64-band log-mel padded to 373 frames, width 1/8 (base 8-64 channels)",
    build=build,
    config={"width": 0.125},
    frontend=LOG_MEL_373,
    training=Stage(corpus="iemocap-like", target="emotion", epochs=25, optimiser="adam", learning_rate=1e-3, batch_size=32),
    version=1,
)
