"""VGG-16 as used by P0 (target model of the leakage study) and P2.

Thirteen 3x3 conv layers in five blocks, each block closed by 2x2 max pooling, then
fully connected layers. P0 taps the output of the first pooling layer (``block1.pool``).
No ImageNet weights exist offline, so the model is trained from scratch; ``width``
scales channels and fully connected sizes.

Two entries test P0's finding (5), "a target trained on LLDs leaks more than one trained on
spectrograms": ``vgg16`` reads P0's mel-spectrogram and ``vgg16-lld`` the same network
reads P0's 32 low-level descriptors per frame (energy, 12 MFCC, zero-crossing rate, voicing
probability, F0, and their deltas; 25 ms windows every 10 ms) as a 32 x 298 map. Everything
else (width, recipe, corpus, seed) is the same, so the two leakage reports differ by the
input features and what those need: a batch norm over each of the 32 rows at the input, since
the descriptors' scales differ by orders of magnitude (the mel target's rows share one scale).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import replace

from torch import nn

from ser_audit.frontend.spec import Features, FrontEndSpec
from ser_audit.models.zoo import ReferenceModel, Stage

_BLOCKS = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))


class VGG16(nn.Module):
    """VGG-16 over a one-channel spectrogram ``[batch, 1, freq, time]``."""

    def __init__(self, n_classes: int, *, width: float = 1.0, standardised_rows: int = 0) -> None:
        super().__init__()
        # Optional per-row standardisation of the input (batch norm over each feature row): LLDs
        # mix scales (ZCR in [0, 1], MFCC in tens), which one global mean and std cannot even out.
        self.input_norm = nn.BatchNorm1d(standardised_rows) if standardised_rows else None
        previous = 1
        for block_index, (channels, repeats) in enumerate(_BLOCKS, start=1):
            count = max(4, int(round(channels * width)))
            layers: OrderedDict[str, nn.Module] = OrderedDict()
            for k in range(1, repeats + 1):
                layers[f"conv{k}"] = nn.Conv2d(previous, count, kernel_size=3, padding=1)
                layers[f"relu{k}"] = nn.ReLU()
                previous = count
            layers["pool"] = nn.MaxPool2d(2)
            setattr(self, f"block{block_index}", nn.Sequential(layers))
        hidden = max(16, int(round(4096 * width)))
        self.average_pool = nn.AdaptiveAvgPool2d((1, 1))
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(previous, hidden)
        self.fc1_relu = nn.ReLU()
        self.fc2 = nn.Linear(hidden, hidden)
        self.fc2_relu = nn.ReLU()
        self.classifier = nn.Linear(hidden, n_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                nn.init.zeros_(module.bias)

    def forward(self, features):  # type: ignore[no-untyped-def]
        x = features
        if self.input_norm is not None:
            x = self.input_norm(x.squeeze(1)).unsqueeze(1)
        for block_index in range(1, len(_BLOCKS) + 1):
            x = getattr(self, f"block{block_index}")(x)
        x = self.fc1_relu(self.fc1(self.flatten(self.average_pool(x))))
        return self.classifier(self.fc2_relu(self.fc2(x)))


def build(n_classes: int = 4, **config: float) -> VGG16:
    return VGG16(n_classes, **config)  # type: ignore[arg-type]


# P0: mel-spectrogram, 30 ms window; hop chosen so that 3 s fit in about 190 frames.
MEL_P0 = FrontEndSpec(
    sample_rate=16_000,
    features=Features(kind="log_mel", n_fft=512, win_length=480, hop_length=256, n_mels=64),
    layout=["batch", "channel", "freq", "time"],
    duration_s=3.0,
    emotions=[],
)

VGG16_ENTRY = ReferenceModel(
    name="vgg16",
    paper="P0 (Alsenani et al., Interspeech 2023); P2",
    description="VGG-16 on 64-band log-mel, width 1/8 (8-64 channels), trained from scratch",
    build=build,
    config={"width": 0.125},
    frontend=MEL_P0,
    training=Stage(corpus="iemocap-like", target="emotion", epochs=30, optimiser="adam", learning_rate=1e-3, batch_size=32),
    version=2,
)

# P0's LLD frames (the S4 attacker's input, and finding 5's other target): 16 descriptors plus
# deltas from 25 ms windows every 10 ms. Five 2x2 poolings take the 32 rows to 1.
LLD_P0 = FrontEndSpec(
    sample_rate=16_000,
    features=Features(kind="lld", n_fft=400, win_length=400, hop_length=160, deltas=1),
    layout=["batch", "channel", "freq", "time"],
    duration_s=3.0,
    emotions=[],
)

VGG16_LLD_ENTRY = replace(
    VGG16_ENTRY,
    name="vgg16-lld",
    description="VGG-16 on P0's 32 LLDs per frame (energy, 12 MFCC, ZCR, voicing, F0 + deltas), width 1/8, "
    "trained from scratch: vgg16's twin for P0's LLD-vs-spectrogram finding",
    config={**VGG16_ENTRY.config, "standardised_rows": 32},
    frontend=LLD_P0,
    version=1,
)
